/** The bare grpc-web transport to the platform's Envoy (same origin), for calls that carry no access token. */
import { createGrpcWebTransport } from "@connectrpc/connect-web";

export const baseUrl = window.location.origin;

export const baseTransport = createGrpcWebTransport({ baseUrl });

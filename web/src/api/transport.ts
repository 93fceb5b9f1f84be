/**
 * The authenticated grpc-web transport: its interceptor sends the access token, refreshes it before it
 * expires, and retries a unary call once when the server says the token is no longer good (streams handle
 * that where they are opened: chat/store.ts, the composer).
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { baseUrl } from "./base";
import { currentAccessToken, refreshAccess } from "./session";

const authenticate: Interceptor = (next) => async (request) => {
  const token = await currentAccessToken();
  if (token) request.header.set("authorization", `Bearer ${token}`);
  try {
    return await next(request);
  } catch (error) {
    if (!token || request.stream || ConnectError.from(error).code !== Code.Unauthenticated) throw error;
    const fresh = await refreshAccess(token);
    request.header.set("authorization", `Bearer ${fresh}`);
    return await next(request);
  }
};

export const transport = createGrpcWebTransport({ baseUrl, interceptors: [authenticate] });

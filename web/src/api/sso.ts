/**
 * Single sign-on in the browser: "Sign in with <provider>" and linking a provider from the account page.
 *
 * The server makes the state, nonce and PKCE verifier; this tab makes a binding secret, keeps it in
 * sessionStorage (this tab only, gone when it closes) and sends only its SHA-256 to StartOidcLogin. The
 * provider sends the browser back to /oidc/callback, which hands the query and the secret to CompleteOidcLogin
 * (or LinkOidcIdentity) over grpc-web. A code and state planted in this tab by someone else fail there: the
 * server compares the secret with the hash it kept. The provider's tokens never reach the browser.
 */
import { createClient } from "@connectrpc/connect";
import { AuthService, OidcClientKind } from "../gen/devpynode/auth/v1/auth_pb";
import { auth } from "./clients";
import { baseTransport } from "./base";
import { saveSession, sessionOf } from "./session";

const PENDING = "devpynode.oidc.pending";
const bare = createClient(AuthService, baseTransport);

interface Pending {
  state: string;
  binding: string; // base64 of the secret
  purpose: "login" | "link";
}

export async function listProviders() {
  return (await bare.listSignInProviders({})).providers;
}

function toBase64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** Starts a flow and sends the browser to the provider. */
export async function startSso(provider: string, purpose: "login" | "link"): Promise<void> {
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const bindingSha256 = new Uint8Array(await crypto.subtle.digest("SHA-256", secret));
  const request = { provider, client: OidcClientKind.WEB, bindingSha256 };
  const flow = purpose === "link" ? (await auth.startOidcLink({ flow: request })).flow : await bare.startOidcLogin(request);
  if (!flow) throw new Error("the server answered no sign-in URL");
  const pending: Pending = { state: flow.state, binding: toBase64(secret), purpose };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  window.location.assign(flow.authorizationUrl);
}

/** Finishes the flow this tab started with the query the provider sent back; where to go next. */
export async function completeSso(query: string): Promise<string> {
  const raw = sessionStorage.getItem(PENDING);
  sessionStorage.removeItem(PENDING); // single use here too: a reload does not try again
  if (!raw) throw new Error("This sign-in was not started in this tab (or was finished already). Start again.");
  const pending = JSON.parse(raw) as Pending;
  const binding = fromBase64(pending.binding);
  if (pending.purpose === "link") {
    await auth.linkOidcIdentity({ callbackQuery: query, binding });
    return "/account";
  }
  const { user, tokens } = await bare.completeOidcLogin({ callbackQuery: query, binding });
  if (user && tokens) saveSession(sessionOf(user, tokens));
  return "/";
}

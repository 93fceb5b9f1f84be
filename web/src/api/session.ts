/**
 * The signed-in session: tokens kept in localStorage and one refresh at a time.
 *
 * Why localStorage: the session survives a reload and every tab shares it. The cost is that script running in
 * the page could read it; the platform's Content-Security-Policy allows no inline or foreign script and the app
 * never renders raw HTML, which is what keeps such script out. Refresh tokens rotate and a reused one ends the
 * whole session (reuse detection), so a refresh holds a Web Lock across tabs: a tab that waited finds the token
 * already rotated by another and takes the new one instead of spending the old one.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { createClient } from "@connectrpc/connect";
import { AuthService, Role, type User } from "../gen/devpynode/auth/v1/auth_pb";
import { baseTransport } from "./base";

const KEY = "devpynode.session";
const FATAL = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.NotFound, Code.InvalidArgument, Code.FailedPrecondition]);
const LOCK = "devpynode.refresh";

export interface StoredSession {
  accessToken: string;
  refreshToken: string;
  /** Milliseconds since the epoch; 0 when unknown. */
  accessExpiresAt: number;
  userId: string;
  email: string;
  displayName: string;
  admin: boolean;
}

type Listener = (session: StoredSession | null, reason: string) => void;
const listeners = new Set<Listener>();

export function loadSession(): StoredSession | null {
  try {
    const raw = localStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as StoredSession) : null;
  } catch {
    return null;
  }
}

function notify(session: StoredSession | null, reason: string): void {
  for (const listener of listeners) listener(session, reason);
}

export function saveSession(session: StoredSession): void {
  localStorage.setItem(KEY, JSON.stringify(session));
  notify(session, "");
}

/** Ends the session in this tab and, through the storage event, in the others; `reason` is shown to the user. */
export function endSession(reason: string): void {
  localStorage.removeItem(KEY);
  notify(null, reason);
}

export function onSessionChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

// Another tab signing in or out (or refreshing) changes the stored session.
window.addEventListener("storage", (event) => {
  if (event.key === KEY) notify(loadSession(), event.newValue ? "" : "You were signed out in another tab.");
});

export function sessionOf(user: User, tokens: { accessToken: string; refreshToken: string; accessTokenExpiresAt?: { seconds: bigint } }): StoredSession {
  return {
    accessToken: tokens.accessToken,
    refreshToken: tokens.refreshToken,
    accessExpiresAt: tokens.accessTokenExpiresAt ? Number(tokens.accessTokenExpiresAt.seconds) * 1000 : 0,
    userId: user.id,
    email: user.email,
    displayName: user.displayName,
    admin: user.role === Role.ADMIN,
  };
}

// The refresh call goes out without the auth interceptor (it carries its own credential).
const auth = createClient(AuthService, baseTransport);
let inflight: Promise<string> | null = null;

/** Counts refresh calls made by this tab (shown on the account page; the browser tests read it). */
export let refreshCount = 0;

/**
 * A fresh access token to replace `stale`. Concurrent callers share one refresh (single flight); a refresh
 * that is refused ends the session visibly and rejects.
 */
export function refreshAccess(stale: string): Promise<string> {
  if (!inflight) {
    inflight = withLock(() => rotate(stale)).finally(() => {
      inflight = null;
    });
  }
  return inflight;
}

async function withLock<T>(work: () => Promise<T>): Promise<T> {
  const locks = (navigator as Navigator & { locks?: LockManager }).locks;
  return locks ? locks.request(LOCK, work) : work();
}

async function rotate(stale: string): Promise<string> {
  const current = loadSession();
  if (!current) throw new ConnectError("signed out", Code.Unauthenticated);
  if (current.accessToken !== stale && current.accessExpiresAt > Date.now() + 5000) {
    return current.accessToken; // another tab (or an earlier flight) already refreshed
  }
  try {
    refreshCount += 1;
    const { tokens } = await auth.refreshToken({ refreshToken: current.refreshToken });
    if (!tokens) throw new ConnectError("no tokens in the answer", Code.Internal);
    saveSession({
      ...current,
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
      accessExpiresAt: tokens.accessTokenExpiresAt ? Number(tokens.accessTokenExpiresAt.seconds) * 1000 : 0,
    });
    return tokens.accessToken;
  } catch (error) {
    // Only the server's verdict on the token ends the session; a dropped connection, a rate limit or a
    // server fault leaves it for the next try.
    if (FATAL.has(ConnectError.from(error).code)) endSession("Your session has ended; sign in again.");
    throw error;
  }
}

/** The access token to send now: refreshed first when it is about to expire. */
export async function currentAccessToken(): Promise<string | null> {
  const session = loadSession();
  if (!session) return null;
  if (session.accessExpiresAt && session.accessExpiresAt < Date.now() + 10_000) {
    return refreshAccess(session.accessToken);
  }
  return session.accessToken;
}

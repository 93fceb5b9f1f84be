/** Signing in, registering and out, and noticing when the server has ended the session. */
import { useEffect } from "react";
import { useQuery } from "@tanstack/react-query";
import { createClient } from "@connectrpc/connect";
import { AuthService, Role } from "../gen/devpynode/auth/v1/auth_pb";
import { auth } from "./clients";
import { endSession, loadSession, saveSession, sessionOf } from "./session";
import { baseTransport } from "./base";
import { meQuery, POLL_MS } from "./queries";

const bare = createClient(AuthService, baseTransport);

export async function signIn(email: string, password: string): Promise<void> {
  const { user, tokens } = await bare.login({ email, password });
  if (user && tokens) saveSession(sessionOf(user, tokens));
}

export async function register(email: string, password: string, displayName: string): Promise<void> {
  const { user, tokens } = await bare.register({ email, password, displayName });
  if (user && tokens) saveSession(sessionOf(user, tokens));
}

export async function signOut(): Promise<void> {
  const session = loadSession();
  if (session) {
    try {
      await auth.logout({});
    } catch {
      // Signing out locally matters more than telling the server; its session expires on its own.
    }
  }
  // Unfinished uploads are resumable only by their owner; on a shared computer their names should not stay.
  localStorage.removeItem("devpynode.uploads");
  endSession("You signed out.");
}

/**
 * While signed in, asks who the user is every 15 s (while the tab is visible) and when the tab becomes visible
 * again: a disabled account or a revoked session fails the refresh, which signs the user out with a message.
 */
export function useSessionWatch(active: boolean): void {
  const { data: user } = useQuery({ ...meQuery, enabled: active, refetchInterval: POLL_MS });
  useEffect(() => {
    if (!user) return;
    const session = loadSession();
    if (user.disabled) endSession("This account has been disabled.");
    else if (session && (session.admin !== (user.role === Role.ADMIN) || session.displayName !== user.displayName)) {
      saveSession({ ...session, admin: user.role === Role.ADMIN, displayName: user.displayName });
    }
  }, [user]);
}

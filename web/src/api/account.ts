/** Signing in, registering and out, and noticing when the server has ended the session. */
import { useEffect } from "react";
import { createClient } from "@connectrpc/connect";
import { AuthService, Role } from "../gen/devpynode/auth/v1/auth_pb";
import { auth } from "./clients";
import { endSession, loadSession, saveSession, sessionOf } from "./session";
import { baseTransport } from "./base";

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
 * While signed in, asks who the user is every 15 s and when the tab becomes visible: a disabled account or a
 * revoked session fails the refresh, which signs the user out with a message.
 */
export function useSessionWatch(active: boolean): void {
  useEffect(() => {
    if (!active) return;
    const check = () => {
      if (document.visibilityState !== "visible") return;
      auth.getCurrentUser({}).then(
        ({ user }) => {
          const session = loadSession();
          if (user?.disabled) endSession("This account has been disabled.");
          else if (user && session && (session.admin !== (user.role === Role.ADMIN) || session.displayName !== user.displayName)) {
            saveSession({ ...session, admin: user.role === Role.ADMIN, displayName: user.displayName });
          }
        },
        () => undefined, // failures that end the session have already done so in the refresh
      );
    };
    check();
    const timer = window.setInterval(check, 15_000);
    document.addEventListener("visibilitychange", check);
    return () => {
      window.clearInterval(timer);
      document.removeEventListener("visibilitychange", check);
    };
  }, [active]);
}

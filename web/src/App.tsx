/** The shell: signed out it shows sign-in; signed in, the navigation and the page for the current path. */
import { useEffect, useState } from "react";
import { loadSession, onSessionChange, type StoredSession } from "./api/session";
import { Link, navigate, usePath } from "./router";
import { SignIn } from "./pages/SignIn";
import { ChatPage } from "./pages/Chat";
import { FilesPage } from "./pages/Files";
import { AccountPage } from "./pages/Account";
import { AdminPage } from "./pages/Admin";
import { ApiDocsPage } from "./pages/ApiDocs";
import { signOut, useSessionWatch } from "./api/account";

export function App() {
  const [session, setSession] = useState<StoredSession | null>(loadSession);
  const [notice, setNotice] = useState("");
  const path = usePath();

  useEffect(
    () =>
      onSessionChange((next, reason) => {
        setSession(next);
        if (!next && reason) setNotice(reason);
        if (next) setNotice("");
      }),
    [],
  );
  useSessionWatch(session !== null);

  if (path.startsWith("/docs")) {
    return (
      <Shell session={session} path={path}>
        <ApiDocsPage />
      </Shell>
    );
  }
  if (!session) {
    return (
      <Shell session={null} path={path}>
        <SignIn notice={notice} />
      </Shell>
    );
  }
  let page;
  if (path.startsWith("/files")) page = <FilesPage />;
  else if (path.startsWith("/account")) page = <AccountPage session={session} />;
  else if (path.startsWith("/admin")) page = session.admin ? <AdminPage /> : <p role="alert">Administrators only.</p>;
  else page = <ChatPage session={session} conversationId={path.match(/^\/c\/([0-9a-f-]{36})/)?.[1] ?? null} />;
  return (
    <Shell session={session} path={path}>
      {page}
    </Shell>
  );
}

function Shell({ session, path, children }: { session: StoredSession | null; path: string; children: React.ReactNode }) {
  const item = (href: string, label: string, active: boolean) => (
    <li>
      <Link href={href} aria-current={active ? "page" : undefined}>
        {label}
      </Link>
    </li>
  );
  return (
    <div className="shell">
      <header className="topbar">
        <Link href="/" className="brand">
          Dev-PyNode
        </Link>
        <nav aria-label="Main">
          <ul>
            {session && item("/", "Chat", path === "/" || path.startsWith("/c/"))}
            {session && item("/files", "Files", path.startsWith("/files"))}
            {session && item("/account", "Account", path.startsWith("/account"))}
            {session?.admin && item("/admin", "Admin", path.startsWith("/admin"))}
            {item("/docs", "API docs", path.startsWith("/docs"))}
          </ul>
        </nav>
        {session && (
          <div className="who">
            <span>{session.displayName || session.email}</span>
            <button type="button" onClick={() => void signOut().then(() => navigate("/"))}>
              Sign out
            </button>
          </div>
        )}
      </header>
      <main>{children}</main>
    </div>
  );
}

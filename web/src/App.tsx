/**
 * The shell and its routes (react-router): signed out, every page but the API docs shows sign-in (at the same
 * address, so a deep link opens once signed in); signed in, the navigation and the page for the path. An
 * unknown path is a "not found" page. The platform answers every extensionless path with index.html, so deep
 * links survive a reload.
 */
import { useEffect, useRef, useState } from "react";
import { Link, Outlet, Route, Routes, useLocation, useNavigate, useOutletContext, useParams } from "react-router";
import { loadSession, onSessionChange, type StoredSession } from "./api/session";
import { queryClient } from "./api/queries";
import { SignIn } from "./pages/SignIn";
import { ChatPage } from "./pages/Chat";
import { FilesPage } from "./pages/Files";
import { AccountPage } from "./pages/Account";
import { AdminPage } from "./pages/Admin";
import { ApiDocsPage } from "./pages/ApiDocs";
import { NotFoundPage } from "./pages/NotFound";
import { OidcCallbackPage } from "./pages/OidcCallback";
import { signOut, useSessionWatch } from "./api/account";

const CONVERSATION_ID = /^[0-9a-f-]{36}$/;

export function App() {
  const [session, setSession] = useState<StoredSession | null>(loadSession);
  const [notice, setNotice] = useState("");

  const userId = useRef(session?.userId);
  useEffect(
    () =>
      onSessionChange((next, reason) => {
        // Cached lists belong to the user who read them.
        if (!next || next.userId !== userId.current) queryClient.clear();
        userId.current = next?.userId;
        setSession(next);
        if (!next && reason) setNotice(reason);
        if (next) setNotice("");
      }),
    [],
  );
  useSessionWatch(session !== null);

  return (
    <Routes>
      <Route element={<Shell session={session} />}>
        <Route path="docs/*" element={<ApiDocsPage signedIn={session !== null} />} />
        <Route path="oidc/callback" element={<OidcCallbackPage />} />
        <Route element={<SignedIn session={session} notice={notice} />}>
          <Route index element={<ChatRoute />} />
          <Route path="c/:conversationId" element={<ChatRoute />} />
          <Route path="files" element={<FilesPage />} />
          <Route path="account" element={<AccountRoute />} />
          <Route path="admin" element={<AdminRoute />} />
        </Route>
        <Route path="*" element={<NotFoundPage />} />
      </Route>
    </Routes>
  );
}

/** The gate for the pages that need an account: sign-in in their place until there is a session. */
function SignedIn({ session, notice }: { session: StoredSession | null; notice: string }) {
  return session ? <Outlet context={session} /> : <SignIn notice={notice} />;
}

const useSession = () => useOutletContext<StoredSession>();

function ChatRoute() {
  const session = useSession();
  const { conversationId } = useParams();
  if (conversationId !== undefined && !CONVERSATION_ID.test(conversationId)) return <NotFoundPage />;
  return <ChatPage session={session} conversationId={conversationId ?? null} />;
}

function AccountRoute() {
  return <AccountPage session={useSession()} />;
}

function AdminRoute() {
  const session = useSession();
  return session.admin ? <AdminPage me={session.userId} /> : <p role="alert">Administrators only.</p>;
}

function Shell({ session }: { session: StoredSession | null }) {
  const path = useLocation().pathname;
  const navigate = useNavigate();
  // On a phone the navigation folds into a menu; following a link closes it again.
  const [menuOpen, setMenuOpen] = useState(false);
  useEffect(() => setMenuOpen(false), [path]);
  const chatting = session !== null && (path === "/" || path.startsWith("/c/"));
  const item = (href: string, label: string, active: boolean) => (
    <li>
      <Link to={href} aria-current={active ? "page" : undefined}>
        {label}
      </Link>
    </li>
  );
  return (
    <div className="shell">
      {/* The first stop for the keyboard: on chat pages straight to the message box, past the lists. */}
      <a
        className="skip-link"
        href={chatting ? "#composer-text" : "#content"}
        onClick={(event) => {
          event.preventDefault();
          document.getElementById(chatting ? "composer-text" : "content")?.focus();
        }}
      >
        {chatting ? "Skip to the message box" : "Skip to content"}
      </a>
      <header className={`topbar${menuOpen ? " menu-open" : ""}`}>
        <Link to="/" className="brand">
          Dev-PyNode
        </Link>
        <button
          type="button"
          className="menu-button"
          aria-expanded={menuOpen}
          aria-controls="main-menu"
          onClick={() => setMenuOpen((open) => !open)}
        >
          Menu
        </button>
        <div className="menu" id="main-menu">
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
              <span className="who-name">{session.displayName || session.email}</span>
              <button type="button" onClick={() => void signOut().then(() => navigate("/"))}>
                Sign out
              </button>
            </div>
          )}
        </div>
      </header>
      <main id="content" tabIndex={-1}>
        <Outlet />
      </main>
    </div>
  );
}

/** /oidc/callback: where the provider sends the browser back; finishes the sign-in (or link) over grpc-web. */
import { useEffect, useRef, useState } from "react";
import { Link, useNavigate } from "react-router";
import { describeError } from "../api/errors";
import { completeSso } from "../api/sso";

export function OidcCallbackPage() {
  const navigate = useNavigate();
  const [error, setError] = useState("");
  const started = useRef(false);
  useEffect(() => {
    if (started.current) return; // once: the state is single use (React runs effects twice in development)
    started.current = true;
    const query = window.location.search;
    // The code leaves the address bar (and the history) at once.
    window.history.replaceState(null, "", "/oidc/callback");
    completeSso(query).then(
      (next) => navigate(next, { replace: true }),
      (failure: unknown) => setError(describeError(failure)),
    );
  }, [navigate]);
  return (
    <section className="card narrow" aria-labelledby="oidc-title" aria-busy={!error}>
      <h1 id="oidc-title">Single sign-on</h1>
      {error ? (
        <>
          <p className="error" role="alert">
            {error}
          </p>
          <Link to="/">Back to sign-in</Link>
        </>
      ) : (
        <p role="status">Signing you in…</p>
      )}
    </section>
  );
}

/** Sign in, or create an account. */
import { useState, type FormEvent } from "react";
import { useQuery } from "@tanstack/react-query";
import { register, signIn } from "../api/account";
import { describeError } from "../api/errors";
import { keys } from "../api/queries";
import { listProviders, startSso } from "../api/sso";

export function SignIn({ notice }: { notice: string }) {
  const [mode, setMode] = useState<"signin" | "register">("signin");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [displayName, setDisplayName] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  // Single sign-on buttons: none when the server has no provider (or cannot say).
  const providers = useQuery({ queryKey: keys.signInProviders, queryFn: listProviders, staleTime: 60_000 });

  const sso = async (provider: string) => {
    setBusy(true);
    setError("");
    try {
      await startSso(provider, "login"); // the browser leaves for the provider
    } catch (failure) {
      setError(describeError(failure));
      setBusy(false);
    }
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError("");
    try {
      if (mode === "signin") await signIn(email, password);
      else await register(email, password, displayName);
    } catch (failure) {
      setError(describeError(failure));
    } finally {
      setBusy(false);
    }
  };

  const title = mode === "signin" ? "Sign in" : "Create an account";
  return (
    <section className="card narrow" aria-labelledby="signin-title">
      <h1 id="signin-title">{title}</h1>
      {notice && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
      <form onSubmit={(e) => void submit(e)}>
        <label>
          E-mail
          <input type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </label>
        <label>
          Password
          <input
            type="password"
            autoComplete={mode === "signin" ? "current-password" : "new-password"}
            required
            minLength={mode === "register" ? 8 : undefined}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        {mode === "register" && (
          <label>
            Display name
            <input autoComplete="nickname" required maxLength={100} value={displayName} onChange={(e) => setDisplayName(e.target.value)} />
          </label>
        )}
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {title}
        </button>
      </form>
      {mode === "signin" && (providers.data?.length ?? 0) > 0 && (
        <div className="sso" role="group" aria-label="Single sign-on">
          {providers.data?.map((p) => (
            <button key={p.id} type="button" className="secondary" disabled={busy} onClick={() => void sso(p.id)}>
              Sign in with {p.displayName}
            </button>
          ))}
        </div>
      )}
      <p>
        {mode === "signin" ? "No account yet? " : "Have an account? "}
        <button
          type="button"
          className="link"
          onClick={() => {
            // An error about the other form would only mislead here.
            setError("");
            setMode(mode === "signin" ? "register" : "signin");
          }}
        >
          {mode === "signin" ? "Create one" : "Sign in"}
        </button>
      </p>
    </section>
  );
}

/** The user's account: who they are, their password, their sessions, their API keys, their usage over time, the models. */
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { ai, auth } from "../api/clients";
import { describeError } from "../api/errors";
import { keys, meQuery, modelsQuery } from "../api/queries";
import { refreshCount, type StoredSession } from "../api/session";
import { dailyUsageQuery, USAGE_DAYS } from "../api/usage";
import { StackedBars } from "../charts/charts";
import { ApiKeysSection } from "./ApiKeys";
import { formatTime } from "../time";
import type { Session } from "../gen/devpynode/auth/v1/auth_pb";
import { Identities, identitiesQuery, SetPasswordForm } from "./Identities";

export function AccountPage({ session }: { session: StoredSession }) {
  // Reads that go out together: with an expired token they meet one refresh between them.
  const me = useQuery(meQuery);
  const models = useQuery(modelsQuery);
  const usage = useQuery({ queryKey: keys.usage, queryFn: () => ai.getUsage({}) });
  const daily = useQuery(dailyUsageQuery);
  const sessions = useQuery({ queryKey: keys.sessions, queryFn: async () => (await auth.listSessions({ pageSize: 50 })).sessions });
  const identities = useQuery(identitiesQuery);
  const reads = [me, models, usage, sessions, daily];
  const failure = reads.find((read) => read.error)?.error;
  const loaded = reads.every((read) => read.isSuccess);
  const user = me.data;
  const used = daily.data && daily.data.models.length > 0;

  return (
    <section className="account" data-loaded={loaded} data-refreshes={refreshCount} aria-busy={!loaded && !failure}>
      <h1>Account</h1>
      {failure && <p className="error" role="alert">{describeError(failure)}</p>}
      <dl>
        <dt>E-mail</dt>
        <dd>{user?.email ?? session.email}</dd>
        <dt>Name</dt>
        <dd>{user?.displayName || "—"}</dd>
        <dt>Role</dt>
        <dd>{session.admin ? "administrator" : "user"}</dd>
      </dl>

      <h2>Usage</h2>
      {used ? (
        <StackedBars
          buckets={daily.data.buckets}
          series={daily.data.models}
          unit="tokens"
          summary={`Tokens per day over the last ${USAGE_DAYS} days, by model: ${daily.data.models.join(", ")}`}
        />
      ) : (
        <p className="muted">{daily.isPending ? "Loading…" : `No usage in the last ${USAGE_DAYS} days.`}</p>
      )}
      {usage.data && usage.data.models.length > 0 && (
        <table className="reflow">
          <caption className="visually-hidden">Usage per model, all time</caption>
          <thead>
            <tr>
              <th scope="col">Model</th>
              <th scope="col" className="number">Requests</th>
              <th scope="col" className="number">Prompt tokens</th>
              <th scope="col" className="number">Completion tokens</th>
            </tr>
          </thead>
          <tbody>
            {usage.data.models.map((m) => (
              <tr key={m.model}>
                <td data-label="Model">{m.model}</td>
                <td data-label="Requests" className="number">{String(m.requests)}</td>
                <td data-label="Prompt tokens" className="number">{String(m.usage?.promptTokens ?? 0n)}</td>
                <td data-label="Completion tokens" className="number">{String(m.usage?.completionTokens ?? 0n)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}

      <div className="grid-2">
        <div>
          <h2>Password</h2>
          {identities.data && !identities.data.hasPassword ? <SetPasswordForm /> : <PasswordForm />}
        </div>
        <div>
          <h2>Sessions</h2>
          <Sessions sessions={sessions.data ?? []} />
        </div>
      </div>

      <h2>API keys</h2>
      <ApiKeysSection />
      <Identities />

      <h2>Models</h2>
      <table className="reflow">
        <thead>
          <tr>
            <th scope="col">Model</th>
            <th scope="col">Provider</th>
            <th scope="col">Available</th>
            <th scope="col">Description</th>
          </tr>
        </thead>
        <tbody>
          {models.data?.map((m) => (
            <tr key={m.id}>
              <td data-label="Model">{m.id}</td>
              <td data-label="Provider">{m.provider}</td>
              <td data-label="Available">{m.available ? "yes" : "no"}</td>
              <td data-label="Description">{m.description}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function PasswordForm() {
  const client = useQueryClient();
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [repeat, setRepeat] = useState("");
  const [done, setDone] = useState("");
  const change = useMutation({
    mutationFn: () => auth.changePassword({ currentPassword: current, newPassword: next }),
    onSuccess: () => {
      setCurrent("");
      setNext("");
      setRepeat("");
      setDone("Password changed. Your other sessions have been signed out.");
      void client.invalidateQueries({ queryKey: keys.sessions });
    },
  });
  const mismatch = repeat !== "" && repeat !== next;
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setDone("");
    if (next !== repeat) return;
    change.mutate();
  };
  return (
    <form className="stacked" onSubmit={submit} aria-label="Change password">
      <label>
        Current password
        <input type="password" autoComplete="current-password" required value={current} onChange={(e) => { setCurrent(e.target.value); change.reset(); }} />
      </label>
      <label>
        New password
        <input type="password" autoComplete="new-password" required minLength={8} maxLength={256} value={next} onChange={(e) => setNext(e.target.value)} />
      </label>
      <label>
        Repeat the new password
        <input
          type="password"
          autoComplete="new-password"
          required
          value={repeat}
          aria-invalid={mismatch}
          aria-describedby={mismatch ? "repeat-hint" : undefined}
          onChange={(e) => setRepeat(e.target.value)}
        />
      </label>
      {mismatch && (
        <p id="repeat-hint" className="error">
          The two new passwords differ.
        </p>
      )}
      {change.error && !mismatch && (
        <p className="error" role="alert">
          {describeError(change.error)}
        </p>
      )}
      {done && (
        <p className="success" role="status">
          {done}
        </p>
      )}
      <button type="submit" disabled={change.isPending || mismatch}>
        Change password
      </button>
    </form>
  );
}

function Sessions({ sessions }: { sessions: Session[] }) {
  const client = useQueryClient();
  const others = sessions.filter((s) => !s.current);
  const revoke = useMutation({
    mutationFn: async (ids: string[]) => {
      for (const id of ids) await auth.revokeSession({ sessionId: id });
    },
    onSettled: () => void client.invalidateQueries({ queryKey: keys.sessions }),
  });
  return (
    <>
      <ul className="sessions">
        {sessions.map((s) => (
          <li key={s.id}>
            <strong>{s.current ? "This browser" : browserName(s.userAgent)}</strong> from {s.ipAddress || "an unknown address"}
            <br />
            <small className="muted">
              signed in {formatTime(s.createdAt)}
              {s.lastUsedAt ? `, last used ${formatTime(s.lastUsedAt)}` : ""}
            </small>{" "}
            {!s.current && (
              <button type="button" className="link danger" disabled={revoke.isPending} onClick={() => revoke.mutate([s.id])}>
                Sign out
              </button>
            )}
          </li>
        ))}
      </ul>
      {revoke.error && (
        <p className="error" role="alert">
          {describeError(revoke.error)}
        </p>
      )}
      <button type="button" className="danger" disabled={others.length === 0 || revoke.isPending} onClick={() => revoke.mutate(others.map((s) => s.id))}>
        Sign out all other sessions
      </button>
    </>
  );
}

/** A short name for a session's client: the browser or tool in its user agent. */
function browserName(userAgent: string): string {
  if (!userAgent) return "Unknown client";
  const known = [/Edg\//, /Firefox\//, /Chrome\//, /Safari\//, /grpc-python/, /devpynode/i, /curl/, /grpcurl/];
  const names = ["Edge", "Firefox", "Chrome", "Safari", "Python gRPC", "Dev-PyNode CLI", "curl", "grpcurl"];
  const index = known.findIndex((pattern) => pattern.test(userAgent));
  return index >= 0 ? names[index] : userAgent.slice(0, 40);
}

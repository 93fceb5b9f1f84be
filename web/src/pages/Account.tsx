/** The user's account: who they are, the models on offer, their usage, and their sessions. */
import { useEffect, useState } from "react";
import { ai, auth } from "../api/clients";
import { describeError } from "../api/errors";
import { refreshCount, type StoredSession } from "../api/session";
import type { Model, GetUsageResponse } from "../gen/devpynode/ai/v1/ai_pb";
import type { Session, User } from "../gen/devpynode/auth/v1/auth_pb";

export function AccountPage({ session }: { session: StoredSession }) {
  const [user, setUser] = useState<User | null>(null);
  const [models, setModels] = useState<Model[]>([]);
  const [usage, setUsage] = useState<GetUsageResponse | null>(null);
  const [sessions, setSessions] = useState<Session[]>([]);
  const [error, setError] = useState("");
  const [loaded, setLoaded] = useState(false);

  useEffect(() => {
    // Four calls at once: with an expired token they meet one refresh between them.
    Promise.all([auth.getCurrentUser({}), ai.listModels({ pageSize: 100 }), ai.getUsage({}), auth.listSessions({ pageSize: 20 })]).then(
      ([me, m, u, s]) => {
        setUser(me.user ?? null);
        setModels(m.models);
        setUsage(u);
        setSessions(s.sessions);
        setLoaded(true);
      },
      (failure) => setError(describeError(failure)),
    );
  }, []);

  return (
    <section className="account" data-loaded={loaded} data-refreshes={refreshCount}>
      <h1>Account</h1>
      {error && <p className="error" role="alert">{error}</p>}
      <dl>
        <dt>E-mail</dt>
        <dd>{user?.email ?? session.email}</dd>
        <dt>Name</dt>
        <dd>{user?.displayName || "—"}</dd>
        <dt>Role</dt>
        <dd>{session.admin ? "administrator" : "user"}</dd>
      </dl>
      <h2>Models</h2>
      <table>
        <thead>
          <tr>
            <th scope="col">Model</th>
            <th scope="col">Provider</th>
            <th scope="col">Available</th>
            <th scope="col">Description</th>
          </tr>
        </thead>
        <tbody>
          {models.map((m) => (
            <tr key={m.id}>
              <td>{m.id}</td>
              <td>{m.provider}</td>
              <td>{m.available ? "yes" : "no"}</td>
              <td>{m.description}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Usage</h2>
      <table>
        <thead>
          <tr>
            <th scope="col">Model</th>
            <th scope="col">Requests</th>
            <th scope="col">Prompt tokens</th>
            <th scope="col">Completion tokens</th>
          </tr>
        </thead>
        <tbody>
          {usage?.models.map((m) => (
            <tr key={m.model}>
              <td>{m.model}</td>
              <td>{String(m.requests)}</td>
              <td>{String(m.usage?.promptTokens ?? 0n)}</td>
              <td>{String(m.usage?.completionTokens ?? 0n)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {usage && usage.models.length === 0 && <p className="muted">No usage yet.</p>}
      <h2>Sessions</h2>
      <ul>
        {sessions.map((s) => (
          <li key={s.id}>
            {s.userAgent || "unknown client"} from {s.ipAddress || "?"}
            {s.current ? " (this one)" : ""}
          </li>
        ))}
      </ul>
    </section>
  );
}

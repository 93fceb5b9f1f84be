/** The user's account: who they are, the models on offer, their usage, and their sessions. */
import { useQuery } from "@tanstack/react-query";
import { ai, auth } from "../api/clients";
import { describeError } from "../api/errors";
import { keys, meQuery, modelsQuery } from "../api/queries";
import { refreshCount, type StoredSession } from "../api/session";

export function AccountPage({ session }: { session: StoredSession }) {
  // Four reads that go out together: with an expired token they meet one refresh between them.
  const me = useQuery(meQuery);
  const models = useQuery(modelsQuery);
  const usage = useQuery({ queryKey: keys.usage, queryFn: () => ai.getUsage({}) });
  const sessions = useQuery({ queryKey: keys.sessions, queryFn: async () => (await auth.listSessions({ pageSize: 20 })).sessions });
  const reads = [me, models, usage, sessions];
  const failure = reads.find((read) => read.error)?.error;
  const loaded = reads.every((read) => read.isSuccess);
  const user = me.data;

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
          {models.data?.map((m) => (
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
          {usage.data?.models.map((m) => (
            <tr key={m.model}>
              <td>{m.model}</td>
              <td>{String(m.requests)}</td>
              <td>{String(m.usage?.promptTokens ?? 0n)}</td>
              <td>{String(m.usage?.completionTokens ?? 0n)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {usage.data?.models.length === 0 && <p className="muted">No usage yet.</p>}
      <h2>Sessions</h2>
      <ul>
        {sessions.data?.map((s) => (
          <li key={s.id}>
            {s.userAgent || "unknown client"} from {s.ipAddress || "?"}
            {s.current ? " (this one)" : ""}
          </li>
        ))}
      </ul>
    </section>
  );
}

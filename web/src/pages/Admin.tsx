/** For administrators: accounts (role, disable) and the audit log. */
import { useCallback, useEffect, useState } from "react";
import { admin } from "../api/clients";
import { describeError } from "../api/errors";
import { Role, type AuditEvent, type User } from "../gen/devpynode/auth/v1/auth_pb";

const USER_PAGES = 10;

export function AdminPage() {
  const [users, setUsers] = useState<User[]>([]);
  const [events, setEvents] = useState<AuditEvent[]>([]);
  const [kind, setKind] = useState("");
  const [error, setError] = useState("");

  const [moreUsers, setMoreUsers] = useState("");
  const [filter, setFilter] = useState("");
  // Up to USER_PAGES pages at once (filtered here by e-mail or name); beyond that, "More users".
  const loadUsers = useCallback(async (from = "") => {
    try {
      let token = from;
      let loaded: User[] = [];
      for (let page = 0; page < USER_PAGES; page++) {
        const answer = await admin.listUsers({ pageSize: 100, pageToken: token });
        loaded = [...loaded, ...answer.users];
        token = answer.nextPageToken;
        if (!token) break;
      }
      setUsers((old) => (from ? [...old, ...loaded] : loaded));
      setMoreUsers(token);
    } catch (failure) {
      setError(describeError(failure));
    }
  }, []);
  const emails = new Map(users.map((u) => [u.id, u.email]));
  const who = (id: string) => emails.get(id) ?? id;
  const shown = filter
    ? users.filter((u) => `${u.email} ${u.displayName}`.toLowerCase().includes(filter.toLowerCase()))
    : users;
  const loadEvents = useCallback(async (filter: string) => {
    try {
      setEvents((await admin.listAuditEvents({ pageSize: 100, kind: filter })).events);
    } catch (failure) {
      setError(describeError(failure));
    }
  }, []);
  useEffect(() => {
    void loadUsers();
    void loadEvents("");
  }, [loadUsers, loadEvents]);

  const update = async (user: User, change: { role?: Role; disabled?: boolean }) => {
    try {
      const { user: updated } = await admin.updateUser({ userId: user.id, ...change });
      if (updated) setUsers((list) => list.map((u) => (u.id === updated.id ? updated : u)));
      void loadEvents(kind);
      setError("");
    } catch (failure) {
      setError(describeError(failure));
    }
  };

  return (
    <section className="admin">
      <h1>Administration</h1>
      {error && <p className="error" role="alert">{error}</p>}
      <h2>Users</h2>
      <label className="filter">
        Filter by e-mail or name
        <input type="search" value={filter} onChange={(e) => setFilter(e.target.value)} />
      </label>
      <table className="users">
        <thead>
          <tr>
            <th scope="col">E-mail</th>
            <th scope="col">Name</th>
            <th scope="col">Role</th>
            <th scope="col">Status</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((user) => (
            <tr key={user.id} data-email={user.email}>
              <td>{user.email}</td>
              <td>{user.displayName}</td>
              <td>
                <label className="visually-hidden" htmlFor={`role-${user.id}`}>
                  Role of {user.email}
                </label>
                <select id={`role-${user.id}`} value={user.role} onChange={(e) => void update(user, { role: Number(e.target.value) })}>
                  <option value={Role.USER}>user</option>
                  <option value={Role.ADMIN}>administrator</option>
                </select>
              </td>
              <td>{user.disabled ? "disabled" : "active"}</td>
              <td>
                <button type="button" onClick={() => void update(user, { disabled: !user.disabled })}>
                  {user.disabled ? `Enable ${user.email}` : `Disable ${user.email}`}
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {moreUsers && (
        <button type="button" onClick={() => void loadUsers(moreUsers)}>
          More users
        </button>
      )}
      <h2>Audit log</h2>
      <form
        className="inline"
        onSubmit={(e) => {
          e.preventDefault();
          void loadEvents(kind);
        }}
      >
        <label>
          Kind
          <input value={kind} placeholder="e.g. login.failed" onChange={(e) => setKind(e.target.value)} />
        </label>
        <button type="submit">Filter</button>
      </form>
      <table className="audit">
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Kind</th>
            <th scope="col">Actor</th>
            <th scope="col">User</th>
            <th scope="col">Address</th>
            <th scope="col">Details</th>
          </tr>
        </thead>
        <tbody>
          {events.map((event) => (
            <tr key={String(event.id)}>
              <td>{event.time ? new Date(Number(event.time.seconds) * 1000).toLocaleString() : ""}</td>
              <td>{event.kind}</td>
              <td>{who(event.actor)}</td>
              <td>{who(event.userId)}</td>
              <td>{event.clientAddress}</td>
              <td>
                {Object.entries(event.details)
                  .map(([k, v]) => `${k}=${v}`)
                  .join(", ")}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

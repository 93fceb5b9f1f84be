/** For administrators: accounts (role, disable), the providers' models and the audit log. */
import { useState } from "react";
import { useInfiniteQuery, useMutation, useQuery, useQueryClient, type InfiniteData } from "@tanstack/react-query";
import { admin } from "../api/clients";
import { AdminModels } from "./AdminModels";
import { describeError } from "../api/errors";
import { keys } from "../api/queries";
import { Role, type User } from "../gen/devpynode/auth/v1/auth_pb";

const USER_PAGES = 10;

/** One "page" of the list: up to USER_PAGES pages of the server's, read one after the other. */
interface UserPages {
  users: User[];
  /** The server's token for the pages after these; empty at the end. */
  next: string;
}

async function userPages(from: string): Promise<UserPages> {
  let token = from;
  let users: User[] = [];
  for (let page = 0; page < USER_PAGES; page++) {
    const answer = await admin.listUsers({ pageSize: 100, pageToken: token });
    users = [...users, ...answer.users];
    token = answer.nextPageToken;
    if (!token) break;
  }
  return { users, next: token };
}

export function AdminPage() {
  const client = useQueryClient();
  // Up to USER_PAGES pages at once (filtered here by e-mail or name); beyond that, "More users".
  const users = useInfiniteQuery({
    queryKey: keys.users,
    queryFn: ({ pageParam }) => userPages(pageParam),
    initialPageParam: "",
    getNextPageParam: (last) => last.next || undefined,
  });
  const [kind, setKind] = useState("");
  const [appliedKind, setAppliedKind] = useState("");
  const events = useQuery({
    queryKey: keys.audit(appliedKind),
    queryFn: async () => (await admin.listAuditEvents({ pageSize: 100, kind: appliedKind })).events,
  });
  const update = useMutation({
    mutationFn: async ({ user, change }: { user: User; change: { role?: Role; disabled?: boolean } }) =>
      (await admin.updateUser({ userId: user.id, ...change })).user,
    onSuccess: (updated) => {
      // The changed row at once, without reading every page of users again; the audit log has a new event.
      if (updated) {
        client.setQueryData(keys.users, (data: InfiniteData<UserPages, string> | undefined) =>
          data && { ...data, pages: data.pages.map((page) => ({ ...page, users: page.users.map((u) => (u.id === updated.id ? updated : u)) })) },
        );
      }
      void client.invalidateQueries({ queryKey: ["admin", "audit"] });
    },
  });
  const [filter, setFilter] = useState("");
  const all = users.data?.pages.flatMap((page) => page.users) ?? [];
  const emails = new Map(all.map((u) => [u.id, u.email]));
  const who = (id: string) => emails.get(id) ?? id;
  const shown = filter ? all.filter((u) => `${u.email} ${u.displayName}`.toLowerCase().includes(filter.toLowerCase())) : all;
  const failure = users.error ?? events.error ?? update.error;

  return (
    <section className="admin">
      <h1>Administration</h1>
      {failure && <p className="error" role="alert">{describeError(failure)}</p>}
      <h2>Users</h2>
      <label className="filter">
        Filter by e-mail or name
        <input type="search" value={filter} onChange={(e) => setFilter(e.target.value)} />
      </label>
      <table className="users" aria-busy={users.isPending}>
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
                <select id={`role-${user.id}`} value={user.role} onChange={(e) => update.mutate({ user, change: { role: Number(e.target.value) } })}>
                  <option value={Role.USER}>user</option>
                  <option value={Role.ADMIN}>administrator</option>
                </select>
              </td>
              <td>{user.disabled ? "disabled" : "active"}</td>
              <td>
                <button type="button" onClick={() => update.mutate({ user, change: { disabled: !user.disabled } })}>
                  {user.disabled ? `Enable ${user.email}` : `Disable ${user.email}`}
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {users.hasNextPage && (
        <button type="button" disabled={users.isFetchingNextPage} onClick={() => void users.fetchNextPage()}>
          More users
        </button>
      )}
      <AdminModels />
      <h2>Audit log</h2>
      <form
        className="inline"
        onSubmit={(e) => {
          e.preventDefault();
          // The same filter again reads the log again.
          if (kind === appliedKind) void events.refetch();
          else setAppliedKind(kind);
        }}
      >
        <label>
          Kind
          <input value={kind} placeholder="e.g. login.failed" onChange={(e) => setKind(e.target.value)} />
        </label>
        <button type="submit">Filter</button>
      </form>
      <table className="audit" aria-busy={events.isPending}>
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
          {events.data?.map((event) => (
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

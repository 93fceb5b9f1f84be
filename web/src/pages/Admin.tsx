/** For administrators: accounts (search, role, disable), the providers' models, usage per user and model, and the audit log. */
import { useState } from "react";
import { useInfiniteQuery, useMutation, useQuery, useQueryClient, type InfiniteData } from "@tanstack/react-query";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { admin, ai } from "../api/clients";
import { HorizontalBars } from "../charts/charts";
import { formatTime } from "../time";
import { AdminModels } from "./AdminModels";
import { UserApiKeys } from "./ApiKeys";
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

export function AdminPage({ me }: { me: string }) {
  const client = useQueryClient();
  // Up to USER_PAGES pages at once (searched here by e-mail or name); beyond that, "More users".
  const users = useInfiniteQuery({
    queryKey: keys.users,
    queryFn: ({ pageParam }) => userPages(pageParam),
    initialPageParam: "",
    getNextPageParam: (last) => last.next || undefined,
  });
  const usage = useQuery({ queryKey: ["admin", "usage"], queryFn: () => ai.getUsage({ allUsers: true }) });
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
  const who = (id: string) => (id ? (emails.get(id) ?? id) : "");
  const shown = filter ? all.filter((u) => `${u.email} ${u.displayName}`.toLowerCase().includes(filter.toLowerCase())) : all;
  const failure = users.error ?? update.error ?? usage.error;
  const perUser = (usage.data?.users ?? []).slice(0, 10).map((u) => ({ label: who(u.userId), value: tokens(u.usage) }));
  const perModel = (usage.data?.models ?? []).map((m) => ({ label: m.model, value: tokens(m.usage) })).sort((a, b) => b.value - a.value);

  return (
    <section className="admin">
      <h1>Administration</h1>
      {failure && <p className="error" role="alert">{describeError(failure)}</p>}
      <h2>Users</h2>
      <label className="filter">
        Filter by e-mail or name
        <input type="search" value={filter} placeholder="Search users" onChange={(e) => setFilter(e.target.value)} />
      </label>
      <p className="muted" aria-live="polite">
        {users.isPending ? "Loading…" : `${shown.length} of ${all.length}${users.hasNextPage ? "+" : ""} users`}
      </p>
      <table className="users reflow" aria-busy={users.isPending}>
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
          {shown.map((user) => {
            const self = user.id === me;
            return (
              <tr key={user.id} data-email={user.email}>
                <td data-label="E-mail">
                  <span>
                    {user.email} {self && <span className="badge you">you</span>}
                  </span>
                </td>
                <td data-label="Name">
                  {user.displayName}
                  <UserIdentities user={user} />
                </td>
                <td data-label="Role">
                  <label className="visually-hidden" htmlFor={`role-${user.id}`}>
                    Role of {user.email}
                  </label>
                  {/* Not one's own role: an administrator who demotes themself cannot undo it. */}
                  <select
                    id={`role-${user.id}`}
                    value={user.role}
                    disabled={self}
                    onChange={(e) => update.mutate({ user, change: { role: Number(e.target.value) } })}
                  >
                    <option value={Role.USER}>user</option>
                    <option value={Role.ADMIN}>administrator</option>
                  </select>
                </td>
                <td data-label="Status">{user.disabled ? <span className="badge disabled">disabled</span> : "active"}</td>
                <td data-label="Actions">
                  {self ? (
                    <span className="muted">—</span>
                  ) : user.disabled ? (
                    <button type="button" className="secondary" aria-label={`Enable ${user.email}`} onClick={() => update.mutate({ user, change: { disabled: false } })}>
                      Enable
                    </button>
                  ) : (
                    <button
                      type="button"
                      className="danger"
                      aria-label={`Disable ${user.email}`}
                      onClick={() => update.mutate({ user, change: { disabled: true } })}
                    >
                      Disable
                    </button>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {users.hasNextPage && (
        <button type="button" disabled={users.isFetchingNextPage} onClick={() => void users.fetchNextPage()}>
          More users
        </button>
      )}
      <h2>API keys</h2>
      <UserApiKeys users={all} />
      <AdminModels />

      <h2>Usage</h2>
      {usage.data && perModel.length > 0 ? (
        <div className="grid-2">
          <div>
            <h3>Tokens per user (top 10)</h3>
            <HorizontalBars rows={perUser} unit="tokens" summary={perUser.map((r) => `${r.label}: ${r.value} tokens`).join("; ")} />
          </div>
          <div>
            <h3>Tokens per model</h3>
            <HorizontalBars rows={perModel} unit="tokens" summary={perModel.map((r) => `${r.label}: ${r.value} tokens`).join("; ")} />
          </div>
        </div>
      ) : (
        <p className="muted">{usage.isPending ? "Loading…" : "No usage yet."}</p>
      )}

      <AuditLog users={all} who={who} />
    </section>
  );
}

function tokens(usage: { promptTokens: bigint; completionTokens: bigint } | undefined): number {
  return Number((usage?.promptTokens ?? 0n) + (usage?.completionTokens ?? 0n));
}

/** The audit log, newest first, filtered by kind and by account, a page of 100 at a time. */
function AuditLog({ users, who }: { users: User[]; who: (id: string) => string }) {
  const [kind, setKind] = useState("");
  const [userId, setUserId] = useState("");
  const [applied, setApplied] = useState({ kind: "", userId: "" });
  const events = useInfiniteQuery({
    queryKey: [...keys.audit(applied.kind), applied.userId],
    queryFn: ({ pageParam }) => admin.listAuditEvents({ pageSize: 100, kind: applied.kind, userId: applied.userId, pageToken: pageParam }),
    initialPageParam: "",
    getNextPageParam: (last) => last.nextPageToken || undefined,
  });
  const rows = events.data?.pages.flatMap((page) => page.events) ?? [];
  const kinds = [...new Set(rows.map((e) => e.kind))].sort();
  return (
    <>
      <h2>Audit log</h2>
      {events.error && <p className="error" role="alert">{describeError(events.error)}</p>}
      <form
        className="filters"
        onSubmit={(e) => {
          e.preventDefault();
          // The same filter again reads the log again.
          if (kind === applied.kind && userId === applied.userId) void events.refetch();
          else setApplied({ kind, userId });
        }}
      >
        <label>
          Kind
          <input value={kind} list="audit-kinds" placeholder="e.g. login.failed" onChange={(e) => setKind(e.target.value)} />
          <datalist id="audit-kinds">
            {kinds.map((k) => (
              <option key={k} value={k} />
            ))}
          </datalist>
        </label>
        <label>
          Account
          <select value={userId} onChange={(e) => setUserId(e.target.value)}>
            <option value="">Everyone</option>
            {users.map((u) => (
              <option key={u.id} value={u.id}>
                {u.email}
              </option>
            ))}
          </select>
        </label>
        <button type="submit">Filter</button>
        {(applied.kind || applied.userId) && (
          <button
            type="button"
            className="secondary"
            onClick={() => {
              setKind("");
              setUserId("");
              setApplied({ kind: "", userId: "" });
            }}
          >
            Clear filters
          </button>
        )}
      </form>
      <table className="audit reflow" aria-busy={events.isPending}>
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Kind</th>
            <th scope="col">Actor</th>
            <th scope="col">Account</th>
            <th scope="col">Address</th>
            <th scope="col">Details</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((event) => (
            <tr key={String(event.id)}>
              <td data-label="Time">
                <time dateTime={event.time ? timestampDate(event.time).toISOString() : undefined}>{formatTime(event.time, true)}</time>
              </td>
              <td data-label="Kind">
                <code>{event.kind}</code>
              </td>
              <td data-label="Actor">{who(event.actor)}</td>
              <td data-label="Account">{who(event.userId)}</td>
              <td data-label="Address">{event.clientAddress}</td>
              <td data-label="Details">
                {Object.entries(event.details)
                  .map(([k, v]) => `${k}: ${v}`)
                  .join(", ")}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {events.isSuccess && rows.length === 0 && <p className="muted">No events match.</p>}
      {events.hasNextPage && (
        <button type="button" disabled={events.isFetchingNextPage} onClick={() => void events.fetchNextPage()}>
          Older events
        </button>
      )}
    </>
  );
}

/** An account's ways to sign in (password, linked providers), read when the administrator opens it. */
function UserIdentities({ user }: { user: User }) {
  const [open, setOpen] = useState(false);
  const listed = useQuery({
    queryKey: [...keys.users, "identities", user.id],
    queryFn: () => admin.listUserIdentities({ userId: user.id }),
    enabled: open,
  });
  return (
    <details onToggle={(e) => setOpen(e.currentTarget.open)}>
      <summary>Sign-in methods</summary>
      {listed.error && <p className="error">{describeError(listed.error)}</p>}
      {listed.data && (
        <ul>
          {listed.data.hasPassword && <li>password</li>}
          {listed.data.identities.map((i) => (
            <li key={`${i.issuer} ${i.subject}`}>
              {i.provider || i.issuer}: {i.email || i.subject}
            </li>
          ))}
          {!listed.data.hasPassword && listed.data.identities.length === 0 && <li>none</li>}
        </ul>
      )}
    </details>
  );
}

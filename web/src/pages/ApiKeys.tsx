/** Personal API keys on the account page: create one (its secret shown once, with a copy button), list, revoke. */
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ai, apiKeys } from "../api/clients";
import { describeError } from "../api/errors";
import { keys } from "../api/queries";
import { CopyButton } from "../chat/CopyButton";
import { formatTime } from "../time";
import { ApiKeyScope, type ApiKey } from "../gen/devpynode/auth/v1/api_keys_pb";

const SCOPES: { value: ApiKeyScope; label: string; hint: string }[] = [
  { value: ApiKeyScope.AI, label: "AI only", hint: "the AI router (models, generation, usage): for OpenAI clients and editors" },
  { value: ApiKeyScope.READ_ONLY, label: "Read only", hint: "reading calls only: lists, downloads, usage" },
  { value: ApiKeyScope.FULL, label: "Full", hint: "everything your account may do, except keys, passwords and sessions" },
];
const EXPIRY_DAYS = [30, 90, 365, 0];

export function scopeLabel(scope: ApiKeyScope): string {
  return SCOPES.find((s) => s.value === scope)?.label ?? "Full";
}

export function keyState(key: ApiKey, now = Date.now()): string {
  if (key.revokeTime) return `revoked ${formatTime(key.revokeTime)}`;
  if (key.expireTime && Number(key.expireTime.seconds) * 1000 <= now) return `expired ${formatTime(key.expireTime)}`;
  return key.expireTime ? `expires ${formatTime(key.expireTime)}` : "never expires";
}

export function ApiKeysSection() {
  const client = useQueryClient();
  const list = useQuery({ queryKey: keys.apiKeys, queryFn: async () => (await apiKeys.listApiKeys({ pageSize: 100 })).apiKeys });
  const usage = useQuery({ queryKey: keys.usageByKey, queryFn: () => ai.getUsage({ byApiKey: true }) });
  const requests = new Map((usage.data?.apiKeys ?? []).map((u) => [u.apiKeyId, u.requests]));
  const [name, setName] = useState("");
  const [scope, setScope] = useState<ApiKeyScope>(ApiKeyScope.AI);
  const [days, setDays] = useState(90);
  const [secret, setSecret] = useState<{ name: string; secret: string } | null>(null);
  const create = useMutation({
    mutationFn: () =>
      apiKeys.createApiKey({
        name,
        scope,
        expireTime: days > 0 ? timestampFromDate(new Date(Date.now() + days * 86_400_000)) : undefined,
      }),
    onSuccess: (created) => {
      setSecret({ name: created.apiKey?.name ?? name, secret: created.secret });
      setName("");
      void client.invalidateQueries({ queryKey: keys.apiKeys });
    },
  });
  const revoke = useMutation({
    mutationFn: (key: ApiKey) => apiKeys.revokeApiKey({ apiKeyId: key.id }),
    onSettled: () => void client.invalidateQueries({ queryKey: keys.apiKeys }),
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setSecret(null);
    create.mutate();
  };
  const failure = list.error ?? create.error ?? revoke.error;

  return (
    <div className="api-keys" data-loaded={list.isSuccess}>
      <p className="muted">
        A key lets a script, an editor or an OpenAI client call the platform as you: send it as <code>Authorization: Bearer dpn_…</code>.
      </p>
      {secret && (
        <div className="notice" role="status" aria-label="New API key">
          <p>
            <strong>{secret.name}</strong>: copy the key now. It is shown only once and cannot be read again.
          </p>
          <p className="secret">
            <code data-testid="api-key-secret">{secret.secret}</code> <CopyButton text={secret.secret} label="Copy key" />
          </p>
          <button type="button" className="link" onClick={() => setSecret(null)}>
            I have copied it
          </button>
        </div>
      )}
      <form className="inline" onSubmit={submit} aria-label="Create an API key">
        <label>
          Name
          <input required maxLength={100} placeholder="laptop, CI, editor" value={name} onChange={(e) => setName(e.target.value)} />
        </label>
        <label>
          Scope
          <select value={scope} onChange={(e) => setScope(Number(e.target.value))}>
            {SCOPES.map((s) => (
              <option key={s.value} value={s.value} title={s.hint}>
                {s.label}
              </option>
            ))}
          </select>
        </label>
        <label>
          Expires
          <select value={days} onChange={(e) => setDays(Number(e.target.value))}>
            {EXPIRY_DAYS.map((d) => (
              <option key={d} value={d}>
                {d > 0 ? `in ${d} days` : "never"}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" disabled={create.isPending || name.trim() === ""}>
          Create key
        </button>
      </form>
      <p className="muted">{SCOPES.find((s) => s.value === scope)?.hint}</p>
      {failure && (
        <p className="error" role="alert">
          {describeError(failure)}
        </p>
      )}
      {list.data && list.data.length > 0 ? (
        <KeyTable
          caption="Your API keys"
          apiKeys={list.data}
          generations={requests}
          revoking={revoke.isPending}
          onRevoke={(key) =>
            window.confirm(`Revoke the key ${key.name}? Anything using it stops working at once.`) && revoke.mutate(key)
          }
        />
      ) : (
        <p className="muted">{list.isPending ? "Loading…" : "No API keys yet."}</p>
      )}
    </div>
  );
}

/** For administrators: one account's keys, with revoke. */
export function UserApiKeys({ users }: { users: { id: string; email: string }[] }) {
  const client = useQueryClient();
  const [userId, setUserId] = useState("");
  const list = useQuery({
    queryKey: keys.userApiKeys(userId),
    queryFn: async () => (await apiKeys.listUserApiKeys({ userId, pageSize: 100 })).apiKeys,
    enabled: userId !== "",
  });
  const revoke = useMutation({
    mutationFn: (key: ApiKey) => apiKeys.revokeUserApiKey({ userId: key.userId, apiKeyId: key.id }),
    onSettled: () => void client.invalidateQueries({ queryKey: keys.userApiKeys(userId) }),
  });
  const failure = list.error ?? revoke.error;
  return (
    <div className="api-keys">
      <label className="filter">
        Owner
        <select value={userId} aria-label="Owner of the keys" onChange={(e) => setUserId(e.target.value)}>
          <option value="">Choose an account</option>
          {users.map((u) => (
            <option key={u.id} value={u.id}>
              {u.email}
            </option>
          ))}
        </select>
      </label>
      {failure && (
        <p className="error" role="alert">
          {describeError(failure)}
        </p>
      )}
      {userId !== "" && list.data && list.data.length === 0 && <p className="muted">This account has no API keys.</p>}
      {list.data && list.data.length > 0 && (
        <KeyTable
          caption="The account's API keys"
          apiKeys={list.data}
          revoking={revoke.isPending}
          onRevoke={(key) => window.confirm(`Revoke the key ${key.name}?`) && revoke.mutate(key)}
        />
      )}
    </div>
  );
}

/** The key table both lists share; `generations` (requests per key) adds the owner's own columns. */
function KeyTable({
  caption,
  apiKeys: shown,
  generations,
  revoking,
  onRevoke,
}: {
  caption: string;
  apiKeys: ApiKey[];
  generations?: Map<string, bigint>;
  revoking: boolean;
  onRevoke: (key: ApiKey) => void;
}) {
  return (
    <table className="reflow">
      <caption className="visually-hidden">{caption}</caption>
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">Key</th>
          <th scope="col">Scope</th>
          {generations && <th scope="col">Created</th>}
          <th scope="col">State</th>
          <th scope="col">Last used</th>
          {generations && (
            <th scope="col" className="number">
              Generations
            </th>
          )}
          <th scope="col">
            <span className="visually-hidden">Actions</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {shown.map((key) => (
          <tr key={key.id}>
            <td data-label="Name">{key.name}</td>
            <td data-label="Key">
              <code>{key.prefix}…</code>
            </td>
            <td data-label="Scope">{scopeLabel(key.scope)}</td>
            {generations && <td data-label="Created">{formatTime(key.createTime)}</td>}
            <td data-label="State">{keyState(key)}</td>
            <td data-label="Last used">{key.lastUseTime ? formatTime(key.lastUseTime) : "never"}</td>
            {generations && (
              <td data-label="Generations" className="number">
                {String(generations.get(key.id) ?? 0n)}
              </td>
            )}
            <td data-label="Actions">
              {!key.revokeTime && (
                <button type="button" className="link danger" disabled={revoking} onClick={() => onRevoke(key)}>
                  Revoke
                </button>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

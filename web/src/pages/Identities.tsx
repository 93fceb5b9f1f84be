/** The account page's single sign-on part: linked provider identities, linking another, unlinking, and a first
 * password for an account that signs in only by SSO. */
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { auth } from "../api/clients";
import { describeError } from "../api/errors";
import { keys } from "../api/queries";
import { listProviders, startSso } from "../api/sso";
import { formatTime } from "../time";

export const identitiesQuery = { queryKey: keys.identities, queryFn: () => auth.listLinkedIdentities({}) };

export function Identities() {
  const client = useQueryClient();
  const linked = useQuery(identitiesQuery);
  const providers = useQuery({ queryKey: keys.signInProviders, queryFn: listProviders, staleTime: 60_000 });
  const [error, setError] = useState("");
  const unlink = useMutation({
    mutationFn: (key: { issuer: string; subject: string }) => auth.unlinkOidcIdentity(key),
    onSettled: () => void client.invalidateQueries({ queryKey: keys.identities }),
  });
  const identities = linked.data?.identities ?? [];
  const lastWayIn = !linked.data?.hasPassword && identities.length === 1;
  const unlinked = (providers.data ?? []).filter((p) => !identities.some((i) => i.provider === p.id));
  if ((providers.data?.length ?? 0) === 0 && identities.length === 0) return null;
  const link = async (provider: string) => {
    setError("");
    try {
      await startSso(provider, "link");
    } catch (failure) {
      setError(describeError(failure));
    }
  };
  return (
    <div className="identities" data-loaded={linked.isSuccess}>
      <h2>Single sign-on</h2>
      {identities.length === 0 ? (
        <p className="muted">No provider is linked to this account.</p>
      ) : (
        <ul>
          {identities.map((i) => (
            <li key={`${i.issuer} ${i.subject}`}>
              <strong>{providers.data?.find((p) => p.id === i.provider)?.displayName ?? i.provider}</strong> {i.email && `as ${i.email}`}
              <br />
              <small className="muted">
                linked {formatTime(i.linkedAt)}, last used {formatTime(i.lastLoginAt)}
              </small>{" "}
              <button
                type="button"
                className="link danger"
                disabled={unlink.isPending || lastWayIn}
                title={lastWayIn ? "Set a password first: this is the account's only way to sign in" : undefined}
                onClick={() => unlink.mutate({ issuer: i.issuer, subject: i.subject })}
              >
                Unlink
              </button>
            </li>
          ))}
        </ul>
      )}
      {unlinked.map((p) => (
        <button key={p.id} type="button" className="secondary" onClick={() => void link(p.id)}>
          Link {p.displayName}
        </button>
      ))}
      {(error || unlink.error) && (
        <p className="error" role="alert">
          {error || describeError(unlink.error)}
        </p>
      )}
    </div>
  );
}

/** A first password, for an account made by single sign-on. */
export function SetPasswordForm() {
  const client = useQueryClient();
  const [next, setNext] = useState("");
  const set = useMutation({
    mutationFn: () => auth.setPassword({ newPassword: next }),
    onSuccess: () => {
      setNext("");
      void client.invalidateQueries({ queryKey: keys.identities });
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    set.mutate();
  };
  return (
    <form className="stacked" onSubmit={submit} aria-label="Set a password">
      <p className="muted">This account signs in by single sign-on only. A password adds a second way in.</p>
      <label>
        New password
        <input type="password" autoComplete="new-password" required minLength={8} maxLength={256} value={next} onChange={(e) => setNext(e.target.value)} />
      </label>
      {set.error && (
        <p className="error" role="alert">
          {describeError(set.error)}
        </p>
      )}
      <button type="submit" disabled={set.isPending}>
        Set password
      </button>
    </form>
  );
}

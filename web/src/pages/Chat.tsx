/** Conversations: the list, one open conversation with its live stream, members, model and composer. */
import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore, type FormEvent } from "react";
import { Link, useNavigate } from "react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Code, ConnectError } from "@connectrpc/connect";
import { chat } from "../api/clients";
import { describeError } from "../api/errors";
import { loadSession, refreshAccess, type StoredSession } from "../api/session";
import { ConversationStore } from "../chat/store";
import { MessageItem, memberName } from "../chat/MessageItem";
import { useModels } from "../chat/models";
import { conversationsQuery, invitationsQuery, keys } from "../api/queries";
import type { Conversation, Invitation } from "../gen/devpynode/chat/v1/chat_pb";
import { uploadFile, type UploadProgress } from "../files/uploads";
import { ProgressBar } from "../files/ProgressBar";
import type { File as StoredFile } from "../gen/devpynode/files/v1/files_pb";

const NO_NAMES: Record<string, string> = {};

export function ChatPage({ session, conversationId }: { session: StoredSession; conversationId: string | null }) {
  const client = useQueryClient();
  const navigate = useNavigate();
  // New conversations and invitations show up without a reload (both poll); the open conversation itself is
  // live through its stream.
  const conversations = useQuery(conversationsQuery);
  const invitations = useQuery(invitationsQuery);
  const refreshList = useCallback(() => void client.invalidateQueries({ queryKey: keys.conversations }), [client]);
  // An invitation makes nobody a member until they accept it here.
  const answer = useMutation({
    mutationFn: async ({ invitation, accept }: { invitation: Invitation; accept: boolean }) => {
      const request = { conversationId: invitation.conversationId };
      await (accept ? chat.acceptInvitation(request) : chat.declineInvitation(request));
    },
    onSuccess: async (_, { invitation, accept }) => {
      await Promise.all([
        client.invalidateQueries({ queryKey: keys.invitations }),
        accept && client.invalidateQueries({ queryKey: keys.conversations }),
      ]);
      if (accept) void navigate(`/c/${invitation.conversationId}`);
    },
  });
  const failure = conversations.error ?? invitations.error ?? answer.error;
  const pending = answer.isPending ? answer.variables.invitation.conversationId : null;

  return (
    <div className="chat-layout">
      <aside className="sidebar" aria-label="Conversations">
        <NewConversation onCreated={(c) => void navigate(`/c/${c.id}`)} />
        {failure && <p className="error" role="alert">{describeError(failure)}</p>}
        {invitations.data && invitations.data.length > 0 && (
          <ul className="invitation-list" aria-label="Invitations">
            {invitations.data.map((i) => (
              <li key={i.conversationId}>
                <span>
                  {i.inviterName || "Someone"} invites you to {i.title || "Untitled"}
                </span>
                <button type="button" disabled={pending === i.conversationId} onClick={() => answer.mutate({ invitation: i, accept: true })}>
                  Accept
                </button>
                <button type="button" disabled={pending === i.conversationId} onClick={() => answer.mutate({ invitation: i, accept: false })}>
                  Decline
                </button>
              </li>
            ))}
          </ul>
        )}
        <ul className="conversation-list" aria-busy={conversations.isPending}>
          {conversations.data?.map((c) => (
            <li key={c.id}>
              <Link to={`/c/${c.id}`} aria-current={c.id === conversationId ? "page" : undefined}>
                {c.title || "Untitled"}
                <small>{c.model}</small>
              </Link>
            </li>
          ))}
          {conversations.isPending && <li className="muted">Loading…</li>}
          {conversations.data?.length === 0 && <li className="muted">No conversations yet.</li>}
        </ul>
      </aside>
      <section className="conversation-pane">
        {conversationId ? (
          <ConversationView key={conversationId} conversationId={conversationId} me={session.userId} onChanged={refreshList} />
        ) : (
          <div className="empty-state">
            <h1>Chat</h1>
            <p>Start a conversation, or pick one on the left.</p>
          </div>
        )}
      </section>
    </div>
  );
}

function NewConversation({ onCreated }: { onCreated: (c: Conversation) => void }) {
  const client = useQueryClient();
  const models = useModels();
  const [model, setModel] = useState("");
  const [title, setTitle] = useState("");
  const create = useMutation({
    mutationFn: async () => (await chat.createConversation({ title, model })).conversation,
    onSuccess: (conversation) => {
      setTitle("");
      void client.invalidateQueries({ queryKey: keys.conversations });
      if (conversation) onCreated(conversation);
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate();
  };
  return (
    <form className="new-conversation" onSubmit={submit} aria-label="New conversation">
      <label>
        Title
        <input value={title} maxLength={200} placeholder="optional" onChange={(e) => setTitle(e.target.value)} />
      </label>
      <label>
        Model
        <select value={model} onChange={(e) => setModel(e.target.value)}>
          <option value="">Default</option>
          {models.map((m) => (
            <option key={m.id} value={m.id} disabled={!m.available}>
              {m.id}
              {m.available ? "" : " (unavailable)"}
            </option>
          ))}
        </select>
      </label>
      <button type="submit" disabled={create.isPending}>
        New conversation
      </button>
      {create.error && <p className="error" role="alert">{describeError(create.error)}</p>}
    </form>
  );
}

function ConversationView({ conversationId, me, onChanged }: { conversationId: string; me: string; onChanged: () => void }) {
  const store = useMemo(() => new ConversationStore(conversationId, me), [conversationId, me]);
  useEffect(() => {
    store.start();
    return () => store.stop();
  }, [store]);
  const snapshot = useSyncExternalStore(store.subscribe, store.getSnapshot);
  const [error, setError] = useState("");
  const conversation = snapshot.conversation;
  const owner = conversation?.ownerId === me;
  const names = conversation?.memberNames ?? NO_NAMES;
  const listRef = useRef<HTMLDivElement>(null);
  const lastText = snapshot.messages.at(-1)?.text.length ?? 0;
  const scrolledOnce = useRef(false);
  useEffect(() => {
    // Follow the newest message while the reader is at the bottom; open at the bottom the first time.
    const list = listRef.current;
    if (!list || snapshot.messages.length === 0) return;
    if (!scrolledOnce.current || list.scrollHeight - list.scrollTop - list.clientHeight < 200) {
      list.scrollTop = list.scrollHeight;
      scrolledOnce.current = true;
    }
  }, [snapshot.messages.length, lastText]);
  const onStopped = useCallback((message: string) => setError(message), []);
  // A new title or model (set by anyone, or given by the first answer) shows in the list at once.
  const title = conversation?.title;
  const model = conversation?.model;
  useEffect(() => {
    if (title !== undefined) onChanged();
  }, [title, model, onChanged]);

  return (
    <div className="conversation" data-status={snapshot.status} data-gaps={snapshot.gaps}>
      <ConversationHeader conversation={conversation} owner={owner} me={me} onError={setError} onChanged={onChanged} />
      <p className={`status ${snapshot.status}`} role="status">
        {snapshot.status === "live" ? "Live" : snapshot.status === "connecting" ? "Connecting…" : snapshot.status === "reconnecting" ? `Reconnecting… ${snapshot.detail}` : snapshot.detail}
      </p>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="messages" ref={listRef} aria-label="Conversation history" role="log">
        {snapshot.hasOlder && (
          <button type="button" className="link" onClick={() => void store.loadOlder()}>
            Earlier messages
          </button>
        )}
        {snapshot.messages.map((message) => (
          <MessageItem key={message.id} conversationId={conversationId} message={message} me={me} names={names} onStopped={onStopped} />
        ))}
      </div>
      <p className="typing" aria-live="polite">
        {snapshot.typing.length > 0 ? `${snapshot.typing.map((u) => memberName(names, u)).join(", ")} typing…` : ""}
      </p>
      {snapshot.status !== "gone" && <Composer conversationId={conversationId} store={store} onError={setError} />}
    </div>
  );
}

function ConversationHeader({
  conversation,
  owner,
  me,
  onError,
  onChanged,
}: {
  conversation: Conversation | null;
  owner: boolean;
  me: string;
  onError: (message: string) => void;
  onChanged: () => void;
}) {
  const models = useModels();
  const navigate = useNavigate();
  const [email, setEmail] = useState("");
  const [invited, setInvited] = useState("");
  if (!conversation) return <h1>Loading…</h1>;
  const call = async (work: () => Promise<unknown>) => {
    try {
      await work();
      onError("");
    } catch (failure) {
      onError(describeError(failure));
    }
  };
  const invite = async (event: FormEvent) => {
    event.preventDefault();
    await call(async () => {
      await chat.addMember({ conversationId: conversation.id, email });
      setInvited(`Invited ${email}: they join once they accept (if the address has an account).`);
      setEmail("");
    });
  };
  return (
    <header className="conversation-header">
      <h1>{conversation.title || "Untitled"}</h1>
      <div className="conversation-tools">
        <label>
          Model
          <select
            value={conversation.model}
            disabled={!owner}
            onChange={(e) => void call(() => chat.updateConversation({ conversationId: conversation.id, model: e.target.value }))}
          >
            {!models.some((m) => m.id === conversation.model) && <option value={conversation.model}>{conversation.model}</option>}
            {models.map((m) => (
              <option key={m.id} value={m.id} disabled={!m.available}>
                {m.id}
              </option>
            ))}
          </select>
        </label>
        <span className="members" title={conversation.memberIds.map((id) => memberName(conversation.memberNames, id)).join(", ")}>
          {conversation.memberIds.length} member{conversation.memberIds.length === 1 ? "" : "s"}:{" "}
          {conversation.memberIds.map((id) => (id === me ? "you" : memberName(conversation.memberNames, id))).join(", ")}
        </span>
        {owner ? (
          <>
            <form onSubmit={(e) => void invite(e)} className="invite">
              <label>
                Invite by e-mail
                <input type="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
              </label>
              <button type="submit">Invite</button>
            </form>
            <button
              type="button"
              className="danger"
              onClick={() =>
                window.confirm("Delete this conversation and all its messages?") &&
                void call(async () => {
                  await chat.deleteConversation({ conversationId: conversation.id });
                  onChanged();
                  void navigate("/");
                })
              }
            >
              Delete
            </button>
          </>
        ) : (
          <button
            type="button"
            onClick={() =>
              void call(async () => {
                await chat.removeMember({ conversationId: conversation.id, userId: me });
                onChanged();
                void navigate("/");
              })
            }
          >
            Leave
          </button>
        )}
      </div>
      {invited && <p role="status" className="muted">{invited}</p>}
    </header>
  );
}

function Composer({ conversationId, store, onError }: { conversationId: string; store: ConversationStore; onError: (m: string) => void }) {
  const [text, setText] = useState("");
  const [attached, setAttached] = useState<StoredFile[]>([]);
  const [upload, setUpload] = useState<UploadProgress | null>(null);
  const [sending, setSending] = useState(false);
  const lastTyping = useRef(0);

  const typing = (value: string) => {
    setText(value);
    const now = Date.now();
    if (value && now - lastTyping.current > 3000) {
      lastTyping.current = now;
      chat.sendTyping({ conversationId, typing: true }).catch(() => undefined);
    }
  };
  const send = async (event: FormEvent) => {
    event.preventDefault();
    if (!text.trim()) return;
    setSending(true);
    const request = {
      conversationId,
      text,
      attachmentFileIds: attached.map((f) => f.id),
      clientRequestId: crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`,
    };
    try {
      // Read only until the stored user message: the answer arrives on the conversation's event stream, so
      // the tab holds one long-lived stream, not two. Retrying with the same client_request_id is safe.
      for (let attempt = 0; ; attempt++) {
        try {
          for await (const response of chat.sendMessage(request)) {
            if (response.event.case === "userMessage") {
              store.mergeMessage(response.event.value);
              break;
            }
          }
          break;
        } catch (failure) {
          if (attempt > 0 || !(await retriable(failure))) throw failure;
        }
      }
      setText("");
      setAttached([]);
      lastTyping.current = 0;
      onError("");
    } catch (failure) {
      onError(describeError(failure));
    } finally {
      setSending(false);
    }
  };
  const attach = async (file: File | undefined) => {
    if (!file) return;
    try {
      const stored = await uploadFile(file, setUpload);
      setAttached((list) => [...list, stored]);
      setUpload(null);
    } catch (failure) {
      setUpload(null);
      onError(describeError(failure));
    }
  };
  return (
    <form className="composer" onSubmit={(e) => void send(e)}>
      {attached.length > 0 && (
        <ul className="attached" aria-label="Attached files">
          {attached.map((f) => (
            <li key={f.id}>
              {f.filename}
              <button type="button" className="link" aria-label={`Remove ${f.filename}`} onClick={() => setAttached((l) => l.filter((x) => x.id !== f.id))}>
                ×
              </button>
            </li>
          ))}
        </ul>
      )}
      {upload && <ProgressBar progress={upload} />}
      <label className="visually-hidden" htmlFor="composer-text">
        Message
      </label>
      <textarea
        id="composer-text"
        value={text}
        rows={3}
        placeholder="Write a message (Markdown); Enter sends, Shift+Enter starts a new line"
        onChange={(e) => typing(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey) {
            e.preventDefault();
            e.currentTarget.form?.requestSubmit();
          }
        }}
      />
      <div className="composer-actions">
        <label className="button">
          Attach a file
          <input type="file" className="visually-hidden" onChange={(e) => void attach(e.target.files?.[0])} />
        </label>
        <button type="submit" disabled={sending || !text.trim()}>
          Send
        </button>
      </div>
    </form>
  );
}

/** A failed SendMessage worth one retry: an expired token (refreshed first) or a dropped connection. */
async function retriable(failure: unknown): Promise<boolean> {
  const code = ConnectError.from(failure).code;
  if (code === Code.Unauthenticated) {
    await refreshAccess(loadSession()?.accessToken ?? "");
    return true;
  }
  return code === Code.Unavailable;
}

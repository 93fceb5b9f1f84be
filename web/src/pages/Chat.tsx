/**
 * Conversations: the list (a drawer on phones), the start page where the first message makes the conversation,
 * and one open conversation with its live stream, members, model and composer.
 */
import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore, type FormEvent, type ReactNode } from "react";
import { Link, useNavigate } from "react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Code, ConnectError } from "@connectrpc/connect";
import { chat } from "../api/clients";
import { describeError } from "../api/errors";
import { loadSession, refreshAccess, type StoredSession } from "../api/session";
import { ConversationStore, type ChatMessageView } from "../chat/store";
import { MessageItem, memberName } from "../chat/MessageItem";
import { rememberModel, useLastModel } from "../chat/models";
import { ModelPicker } from "../chat/ModelPicker";
import { plainTitle } from "../chat/titles";
import { conversationsQuery, invitationsQuery, keys } from "../api/queries";
import type { Conversation, Invitation, Message } from "../gen/devpynode/chat/v1/chat_pb";
import { uploadFile, type UploadProgress } from "../files/uploads";
import { ProgressBar } from "../files/ProgressBar";
import type { File as StoredFile } from "../gen/devpynode/files/v1/files_pb";

// On a touch screen the keyboard's Enter starts a new line (there is no Shift to hold) and Send sends.
const TOUCH = typeof window !== "undefined" && window.matchMedia?.("(pointer: coarse)").matches;

const NO_NAMES: Record<string, string> = {};

/** Whether the page is phone-wide (the conversations then open as a drawer over the page). */
const narrow = () => window.matchMedia("(max-width: 760px)").matches;

export function ChatPage({ session, conversationId }: { session: StoredSession; conversationId: string | null }) {
  const client = useQueryClient();
  const navigate = useNavigate();
  // New conversations and invitations show up without a reload (both poll); the open conversation itself is
  // live through its stream.
  const conversations = useQuery(conversationsQuery);
  const invitations = useQuery(invitationsQuery);
  const refreshList = useCallback(() => void client.invalidateQueries({ queryKey: keys.conversations }), [client]);
  // Beside the page on a desktop (it can be folded away), a drawer on a phone that closes on a choice.
  const [sidebar, setSidebar] = useState(() => !narrow());
  useEffect(() => {
    if (narrow()) setSidebar(false);
  }, [conversationId]);
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
  const toggle = (
    <button
      type="button"
      className="secondary sidebar-toggle"
      aria-expanded={sidebar}
      aria-controls="conversation-sidebar"
      onClick={() => setSidebar((open) => !open)}
    >
      {sidebar ? "Hide conversations" : "Conversations"}
    </button>
  );

  return (
    <div className={`chat-layout ${sidebar ? "sidebar-open" : "sidebar-closed"}`}>
      <aside className="sidebar" id="conversation-sidebar" aria-label="Conversations">
        <div className="sidebar-head">
          <Link to="/" className="button" onClick={() => narrow() && setSidebar(false)}>
            New chat
          </Link>
          <button type="button" className="icon" onClick={() => setSidebar(false)}>
            Close
          </button>
        </div>
        {failure && <p className="error" role="alert">{describeError(failure)}</p>}
        {invitations.data && invitations.data.length > 0 && (
          <ul className="invitation-list" aria-label="Invitations">
            {invitations.data.map((i) => (
              <li key={i.conversationId}>
                <span>
                  {i.inviterName || "Someone"} invites you to {plainTitle(i.title)}
                </span>
                <button type="button" disabled={pending === i.conversationId} onClick={() => answer.mutate({ invitation: i, accept: true })}>
                  Accept
                </button>
                <button type="button" className="secondary" disabled={pending === i.conversationId} onClick={() => answer.mutate({ invitation: i, accept: false })}>
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
                <span className="title">{plainTitle(c.title)}</span>
                <small>{c.model}</small>
              </Link>
            </li>
          ))}
          {conversations.isPending && <li className="muted">Loading…</li>}
          {conversations.data?.length === 0 && <li className="muted">No conversations yet.</li>}
        </ul>
      </aside>
      <section className="conversation-pane" aria-label="Conversation">
        {conversationId ? (
          <ConversationView key={conversationId} conversationId={conversationId} me={session.userId} onChanged={refreshList} toggle={toggle} />
        ) : (
          <StartChat toggle={toggle} onStarted={(id) => void navigate(`/c/${id}`)} />
        )}
      </section>
    </div>
  );
}

/** The start page: pick a model and type; the conversation is made with the first message. */
function StartChat({ toggle, onStarted }: { toggle: ReactNode; onStarted: (conversationId: string) => void }) {
  const client = useQueryClient();
  const [model, setModel] = useLastModel();
  const [error, setError] = useState("");
  const start = async (text: string, attachmentFileIds: string[]) => {
    const { conversation } = await chat.createConversation({ title: "", model });
    if (!conversation) throw new Error("the server made no conversation");
    await postMessage(conversation.id, text, attachmentFileIds);
    void client.invalidateQueries({ queryKey: keys.conversations });
    onStarted(conversation.id);
  };
  return (
    <div className="conversation start-chat">
      <div className="conversation-title">{toggle}</div>
      <div className="start">
        <h1>Chat</h1>
        <p className="muted">Ask anything: the conversation starts with your first message. Invite others once it has begun.</p>
        <ModelPicker value={model} onChange={setModel} />
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <Composer onSend={start} onError={setError} focusOnMount />
      </div>
    </div>
  );
}

/** Posts a message, reading SendMessage only until the stored user message (the answer comes on the stream). */
async function postMessage(conversationId: string, text: string, attachmentFileIds: string[], onStored?: (m: Message) => void): Promise<void> {
  const request = {
    conversationId,
    text,
    attachmentFileIds,
    clientRequestId: crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`,
  };
  // The tab holds one long-lived stream, not two. Retrying with the same client_request_id is safe.
  for (let attempt = 0; ; attempt++) {
    try {
      for await (const response of chat.sendMessage(request)) {
        if (response.event.case === "userMessage") {
          onStored?.(response.event.value);
          break;
        }
      }
      return;
    } catch (failure) {
      if (attempt > 0 || !(await retriable(failure))) throw failure;
    }
  }
}

function ConversationView({
  conversationId,
  me,
  onChanged,
  toggle,
}: {
  conversationId: string;
  me: string;
  onChanged: () => void;
  toggle: ReactNode;
}) {
  const store = useMemo(() => new ConversationStore(conversationId, me), [conversationId, me]);
  useEffect(() => {
    store.start();
    return () => store.stop();
  }, [store]);
  const snapshot = useSyncExternalStore(store.subscribe, store.getSnapshot);
  const [error, setError] = useState("");
  const [draft, setDraft] = useState<Draft | null>(null);
  const conversation = snapshot.conversation;
  const owner = conversation?.ownerId === me;
  const names = conversation?.memberNames ?? NO_NAMES;
  const listRef = useRef<HTMLDivElement>(null);
  const lastText = snapshot.messages.at(-1)?.text.length ?? 0;
  const scrolledOnce = useRef(false);
  // Whether the reader was at the bottom before the latest change, kept from scroll events: measured after a
  // change instead, a long message just sent (or a burst of text) looked like the reader had scrolled away.
  const following = useRef(true);
  const onScroll = useCallback(() => {
    const list = listRef.current;
    if (list) following.current = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }, []);
  useEffect(() => {
    // Follow the newest message while the reader is at the bottom; open at the bottom the first time.
    const list = listRef.current;
    if (!list || snapshot.messages.length === 0) return;
    if (!scrolledOnce.current || following.current) {
      list.scrollTop = list.scrollHeight;
      scrolledOnce.current = true;
      following.current = true;
    }
  }, [snapshot.messages.length, lastText]);
  const onStopped = useCallback((message: string) => setError(message), []);
  // A new title or model (set by anyone, or given by the first answer) shows in the list at once.
  const title = conversation?.title;
  const model = conversation?.model;
  useEffect(() => {
    if (title !== undefined) onChanged();
  }, [title, model, onChanged]);

  const send = useCallback(
    (text: string, attachmentFileIds: string[]) => {
      following.current = true; // one's own message, and its answer, are always shown
      return postMessage(conversationId, text, attachmentFileIds, (m) => store.mergeMessage(m));
    },
    [conversationId, store],
  );
  const onEdit = useCallback((message: ChatMessageView) => setDraft({ text: message.text, key: Date.now() }), []);
  const byId = useMemo(() => new Map(snapshot.messages.map((m) => [m.id, m])), [snapshot.messages]);
  const onRegenerate = useCallback(
    (answer: ChatMessageView) => {
      const question = byId.get(answer.replyToId);
      if (question) send(question.text, []).catch((failure: unknown) => setError(describeError(failure)));
    },
    [byId, send],
  );
  // "Regenerate" on the latest answer only, when it answers one's own message.
  const lastAnswer = [...snapshot.messages].reverse().find((m) => m.role === "assistant");
  const regenerable = lastAnswer && byId.get(lastAnswer.replyToId)?.authorId === me ? lastAnswer.id : "";

  return (
    <div className="conversation" data-status={snapshot.status} data-gaps={snapshot.gaps}>
      <ConversationHeader conversation={conversation} owner={owner} me={me} onError={setError} onChanged={onChanged} toggle={toggle} />
      <p className={`status ${snapshot.status}`} role="status">
        {snapshot.status === "live" ? "Live" : snapshot.status === "connecting" ? "Connecting…" : snapshot.status === "reconnecting" ? `Reconnecting… ${snapshot.detail}` : snapshot.detail}
      </p>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="messages" ref={listRef} onScroll={onScroll} aria-label="Conversation history" role="log">
        {snapshot.hasOlder && (
          <button type="button" className="link" onClick={() => void store.loadOlder()}>
            Earlier messages
          </button>
        )}
        {snapshot.messages.map((message) => (
          <MessageItem
            key={message.id}
            conversationId={conversationId}
            message={message}
            me={me}
            names={names}
            onStopped={onStopped}
            onEdit={message.role === "user" && message.authorId === me ? onEdit : undefined}
            onRegenerate={message.id === regenerable ? onRegenerate : undefined}
          />
        ))}
      </div>
      <p className="typing" aria-live="polite">
        {snapshot.typing.length > 0 ? `${snapshot.typing.map((u) => memberName(names, u)).join(", ")} typing…` : ""}
      </p>
      {snapshot.status !== "gone" && (
        <Composer conversationId={conversationId} onSend={send} onError={setError} draft={draft} onDraftDone={() => setDraft(null)} focusOnMount />
      )}
    </div>
  );
}

/** A message put back into the composer for editing (key: a new one each time, even for the same text). */
interface Draft {
  text: string;
  key: number;
}

function ConversationHeader({
  conversation,
  owner,
  me,
  onError,
  onChanged,
  toggle,
}: {
  conversation: Conversation | null;
  owner: boolean;
  me: string;
  onError: (message: string) => void;
  onChanged: () => void;
  toggle: ReactNode;
}) {
  const navigate = useNavigate();
  const [email, setEmail] = useState("");
  const [invited, setInvited] = useState("");
  // Members, invitations and deletion fold away on a phone, where the messages need the room.
  const [more, setMore] = useState(() => !narrow());
  if (!conversation)
    return (
      <div className="conversation-title">
        {toggle}
        <h1>Loading…</h1>
      </div>
    );
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
  const members = conversation.memberIds.map((id) => (id === me ? "you" : memberName(conversation.memberNames, id)));
  return (
    <header className="conversation-header">
      <div className="conversation-title">
        {toggle}
        <h1 title={plainTitle(conversation.title)}>{plainTitle(conversation.title)}</h1>
      </div>
      <div className="conversation-tools">
        <ModelPicker
          value={conversation.model}
          disabled={!owner}
          onChange={(model) => {
            rememberModel(model);
            void call(() => chat.updateConversation({ conversationId: conversation.id, model }));
          }}
        />
        <details className="conversation-more" open={more} onToggle={(e) => setMore(e.currentTarget.open)}>
          <summary>Members and settings</summary>
          <div className="conversation-tools">
            <span className="members">
              {conversation.memberIds.length} member{conversation.memberIds.length === 1 ? "" : "s"}: {members.join(", ")}
            </span>
            {owner ? (
              <>
                <form onSubmit={(e) => void invite(e)} className="invite">
                  <label>
                    Invite by e-mail
                    <input type="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
                  </label>
                  <button type="submit" className="secondary">
                    Invite
                  </button>
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
                  Delete conversation
                </button>
              </>
            ) : (
              <button
                type="button"
                className="danger"
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
        </details>
      </div>
      {invited && <p role="status" className="muted">{invited}</p>}
    </header>
  );
}

interface ComposerProps {
  /** Set in an open conversation: typing is shown to the other members. */
  conversationId?: string;
  onSend: (text: string, attachmentFileIds: string[]) => Promise<void>;
  onError: (message: string) => void;
  draft?: Draft | null;
  onDraftDone?: () => void;
  /** Put the caret in the message box when the page opens (a chat's page is for typing). */
  focusOnMount?: boolean;
}

function Composer({ conversationId, onSend, onError, draft, onDraftDone, focusOnMount }: ComposerProps) {
  const [text, setText] = useState("");
  const [attached, setAttached] = useState<StoredFile[]>([]);
  const [upload, setUpload] = useState<UploadProgress | null>(null);
  const [sending, setSending] = useState(false);
  const lastTyping = useRef(0);
  const area = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    if (focusOnMount) area.current?.focus();
  }, [focusOnMount]);
  const draftKey = draft?.key;
  useEffect(() => {
    if (!draft) return;
    setText(draft.text);
    area.current?.focus();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [draftKey]);

  const typing = (value: string) => {
    setText(value);
    // A cleared box starts over: the next keystroke is news to the others (who may have joined since).
    if (!value) lastTyping.current = 0;
    const now = Date.now();
    if (conversationId && value && now - lastTyping.current > 3000) {
      lastTyping.current = now;
      chat.sendTyping({ conversationId, typing: true }).catch(() => undefined);
    }
  };
  const send = async (event: FormEvent) => {
    event.preventDefault();
    if (!text.trim() || sending) return;
    setSending(true);
    try {
      await onSend(text, attached.map((f) => f.id));
      setText("");
      setAttached([]);
      lastTyping.current = 0;
      onDraftDone?.();
      onError("");
    } catch (failure) {
      onError(describeError(failure));
    } finally {
      setSending(false);
      area.current?.focus();
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
      {draft && (
        <p className="editing">
          <span>Editing a copy of your message: it is sent as a new message.</span>
          <button
            type="button"
            className="link"
            onClick={() => {
              setText("");
              onDraftDone?.();
            }}
          >
            Cancel editing
          </button>
        </p>
      )}
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
        ref={area}
        value={text}
        rows={3}
        placeholder={TOUCH ? "Write a message (Markdown)" : "Write a message (Markdown); Enter sends, Shift+Enter starts a new line"}
        onChange={(e) => typing(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !TOUCH && !e.nativeEvent.isComposing) {
            e.preventDefault();
            e.currentTarget.form?.requestSubmit();
          }
        }}
      />
      <div className="composer-actions">
        <label className="button secondary-button">
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

/**
 * One open conversation in the browser: its messages, typing members and stream status, fed by a single
 * StreamEvents stream (the tab's only long-lived stream: SendMessage is read only up to the stored user
 * message, the answer arrives here like everybody else's).
 *
 * Order of start-up, as the contract asks: open StreamEvents, wait for `ready`, then read the history; a
 * message seen in both is merged by id. Deltas are numbered per message: one at or below the message's
 * last_seq is a duplicate and dropped, so replays after a reconnect (`after` = the last event id) never
 * double text. Changes are published at most once per animation frame.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { chat } from "../api/clients";
import { describeError } from "../api/errors";
import { loadSession, refreshAccess } from "../api/session";
import {
  MessageRole,
  MessageState,
  type Conversation,
  type Delta,
  type Message,
  type ReactionSummary,
  type StreamEventsResponse,
} from "../gen/devpynode/chat/v1/chat_pb";

export type Status = "connecting" | "live" | "reconnecting" | "gone";

export interface ChatMessageView {
  id: string;
  role: "user" | "assistant";
  authorId: string;
  text: string;
  state: MessageState;
  lastSeq: bigint;
  createdAt: number;
  model: string;
  error: string;
  reactions: ReactionSummary[];
  attachments: Message["attachments"];
  /** An AI reply's tool calls (the member's client runs them and posts the results). */
  toolCalls: Message["toolCalls"];
  /** A tool result's call id (the message's text is the result). */
  toolCallId: string;
  /** For an answer: the user message it answers (for "regenerate"). */
  replyToId: string;
}

export interface Snapshot {
  status: Status;
  detail: string;
  conversation: Conversation | null;
  messages: ChatMessageView[];
  typing: string[];
  hasOlder: boolean;
  /** Deltas that arrived out of order (a gap); the browser tests assert it stays 0. */
  gaps: number;
}

function viewOf(message: Message): ChatMessageView {
  return {
    id: message.id,
    role: message.role === MessageRole.ASSISTANT ? "assistant" : "user",
    authorId: message.authorId,
    text: message.text,
    state: message.state,
    lastSeq: message.lastSeq,
    // Milliseconds with the microseconds kept: a reply is stored 1 µs after the message it answers.
    createdAt: message.createdAt ? Number(message.createdAt.seconds) * 1000 + message.createdAt.nanos / 1e6 : Date.now(),
    model: message.model,
    error: message.error,
    reactions: message.reactions,
    attachments: message.attachments,
    toolCalls: message.toolCalls,
    toolCallId: message.toolCallId,
    replyToId: message.replyToId,
  };
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = window.setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      window.clearTimeout(timer);
      resolve();
    });
  });

export class ConversationStore {
  private messages = new Map<string, ChatMessageView>();
  private typing = new Map<string, number>();
  private conversation: Conversation | null = null;
  private status: Status = "connecting";
  private detail = "";
  private cursor = "";
  private olderToken = "";
  private gaps = 0;
  private listeners = new Set<() => void>();
  private snapshot: Snapshot;
  private scheduled = false;
  private abort = new AbortController();

  constructor(
    readonly conversationId: string,
    private readonly me: string,
  ) {
    this.snapshot = this.build();
  }

  subscribe = (listener: () => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = () => this.snapshot;

  start(): void {
    void this.follow(this.abort.signal);
    void this.expireTyping(this.abort.signal);
  }

  stop(): void {
    this.abort.abort();
  }

  private build(): Snapshot {
    const now = Date.now();
    return {
      status: this.status,
      detail: this.detail,
      conversation: this.conversation,
      messages: [...this.messages.values()].sort(
        (a, b) => a.createdAt - b.createdAt || (a.role === b.role ? a.id.localeCompare(b.id) : a.role === "user" ? -1 : 1),
      ),
      typing: [...this.typing].filter(([, until]) => until > now).map(([user]) => user),
      hasOlder: this.olderToken !== "",
      gaps: this.gaps,
    };
  }

  /** Publishes the state at the next frame (or shortly, in a hidden tab where frames do not run). */
  private changed(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const flush = () => {
      this.scheduled = false;
      this.snapshot = this.build();
      for (const listener of this.listeners) listener();
    };
    if (document.visibilityState === "visible") requestAnimationFrame(flush);
    else window.setTimeout(flush, 50);
  }

  private async follow(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      const token = loadSession()?.accessToken ?? "";
      // A resumed stream (`after`) has no `ready` event and an idle conversation sends nothing: a stream that
      // has stood for a moment without failing is live.
      const settled = this.cursor ? window.setTimeout(() => this.status === "reconnecting" && this.setStatus("live", ""), 1500) : 0;
      try {
        const stream = chat.streamEvents({ conversationId: this.conversationId, after: this.cursor }, { signal });
        for await (const event of stream) {
          attempt = 0;
          if (event.id) this.cursor = event.id;
          if (await this.apply(event)) return;
        }
      } catch (error) {
        if (signal.aborted) return;
        const code = ConnectError.from(error).code;
        if (code === Code.NotFound || code === Code.PermissionDenied) {
          this.setStatus("gone", "This conversation is not available.");
          return;
        }
        if (code === Code.Unauthenticated) {
          try {
            await refreshAccess(token);
            continue;
          } catch {
            return; // the session has ended; the app shows the sign-in page
          }
        }
        this.detail = describeError(error);
      } finally {
        window.clearTimeout(settled);
      }
      this.setStatus("reconnecting", this.detail);
      await sleep(Math.min(500 * 2 ** attempt, 15_000), signal);
      attempt += 1;
    }
  }

  /** Applies one event; true when the stream is over for good. */
  private async apply(event: StreamEventsResponse): Promise<boolean> {
    const { case: kind, value } = event.event;
    switch (kind) {
      case "ready":
        this.setStatus("live", "");
        await this.loadHistory();
        break;
      case "reload":
        this.setStatus("live", "");
        await this.loadHistory();
        break;
      case "message":
        this.mergeMessage(value);
        break;
      case "delta":
        this.applyDelta(value);
        break;
      case "typing":
        if (value.userId !== this.me) {
          if (value.typing && value.expiresAt) this.typing.set(value.userId, timestampMs(value.expiresAt));
          else this.typing.delete(value.userId);
        }
        break;
      case "reaction": {
        const message = this.messages.get(value.messageId);
        if (message) this.messages.set(message.id, { ...message, reactions: value.reactions });
        break;
      }
      case "conversationUpdated":
        this.conversation = value;
        break;
      case "memberAdded":
      case "memberRemoved":
        if (kind === "memberRemoved" && value.userId === this.me) {
          this.setStatus("gone", "You are no longer a member of this conversation.");
          return true;
        }
        await this.loadConversation();
        break;
      case "conversationDeleted":
        this.setStatus("gone", "This conversation was deleted.");
        return true;
      default:
        return false;
    }
    if (this.status !== "live") this.status = "live";
    this.changed();
    return false;
  }

  private setStatus(status: Status, detail: string): void {
    this.status = status;
    this.detail = detail;
    this.changed();
  }

  async loadConversation(): Promise<void> {
    try {
      const { conversation } = await chat.getConversation({ conversationId: this.conversationId });
      this.conversation = conversation ?? null;
      this.changed();
    } catch (error) {
      this.detail = describeError(error);
      this.changed();
    }
  }

  private async loadHistory(): Promise<void> {
    const [page] = await Promise.all([
      chat.listMessages({ conversationId: this.conversationId, pageSize: 50 }),
      this.conversation ? Promise.resolve() : this.loadConversation(),
    ]);
    for (const message of page.messages) this.mergeMessage(message);
    this.olderToken = page.nextPageToken;
    this.changed();
  }

  async loadOlder(): Promise<void> {
    if (!this.olderToken) return;
    const page = await chat.listMessages({ conversationId: this.conversationId, pageSize: 50, pageToken: this.olderToken });
    for (const message of page.messages) this.mergeMessage(message);
    this.olderToken = page.nextPageToken;
    this.changed();
  }

  /** Keeps whichever copy is further along: a finished message over a streaming one, else the higher last_seq. */
  mergeMessage(message: Message): void {
    const incoming = viewOf(message);
    const existing = this.messages.get(incoming.id);
    if (existing && existing.state !== MessageState.STREAMING && incoming.state === MessageState.STREAMING) return;
    if (existing && incoming.state === MessageState.STREAMING && existing.lastSeq > incoming.lastSeq) {
      this.messages.set(incoming.id, { ...incoming, text: existing.text, lastSeq: existing.lastSeq });
    } else {
      this.messages.set(incoming.id, incoming);
    }
    this.changed();
  }

  private applyDelta(delta: Delta): void {
    const message = this.messages.get(delta.messageId) ?? {
      id: delta.messageId,
      role: "assistant" as const,
      authorId: "",
      text: "",
      state: MessageState.STREAMING,
      lastSeq: 0n,
      createdAt: Date.now(),
      model: this.conversation?.model ?? "",
      error: "",
      reactions: [],
      attachments: [],
      toolCalls: [],
      toolCallId: "",
      replyToId: "",
    };
    if (message.state !== MessageState.STREAMING || delta.seq <= message.lastSeq) return; // already have it
    if (delta.seq !== message.lastSeq + 1n) this.gaps += 1;
    this.messages.set(message.id, { ...message, text: message.text + delta.text, lastSeq: delta.seq });
  }

  private async expireTyping(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await sleep(1000, signal);
      const now = Date.now();
      let expired = false;
      for (const [user, until] of this.typing) {
        if (until <= now) {
          this.typing.delete(user);
          expired = true;
        }
      }
      if (expired) this.changed();
    }
  }
}

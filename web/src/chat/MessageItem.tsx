/**
 * One message: author, Markdown text, state, attachments, tool calls or a tool result, reactions, and a stop button while it streams; once
 * done, copy, and "edit and resend" (own messages) or "regenerate" (an answer to one's own message: the
 * question is asked again as a new message, the earlier answer stays).
 */
import { memo, useEffect, useState } from "react";
import { CopyButton } from "./CopyButton";
import { chat } from "../api/clients";
import { describeError } from "../api/errors";
import { MessageState } from "../gen/devpynode/chat/v1/chat_pb";
import { saveBlob } from "../files/uploads";
import { MarkdownText } from "./markdown";
import type { ChatMessageView } from "./store";

export const REACTIONS = ["👍", "❤️", "😂", "🎉"];
const NAMES: Record<string, string> = { "👍": "thumbs up", "❤️": "heart", "😂": "laughing", "🎉": "party" };
const INLINE_IMAGE_LIMIT = 8 * 1024 * 1024;

interface Props {
  conversationId: string;
  message: ChatMessageView;
  me: string;
  /** Members' display names by user id. */
  names: Record<string, string>;
  onStopped: (error: string) => void;
  /** Set for an answer that can be asked again. */
  onRegenerate?: (message: ChatMessageView) => void;
  /** Set for the reader's own messages. */
  onEdit?: (message: ChatMessageView) => void;
}

export const MessageItem = memo(function MessageItem({ conversationId, message, me, names, onStopped, onRegenerate, onEdit }: Props) {
  const streaming = message.state === MessageState.STREAMING;
  const author =
    message.role === "assistant" ? message.model || "AI" : message.authorId === me ? "You" : memberName(names, message.authorId);
  const toggle = async (emoji: string, mine: boolean) => {
    const request = { conversationId, messageId: message.id, emoji };
    try {
      if (mine) await chat.removeReaction(request);
      else await chat.addReaction(request);
    } catch (error) {
      onStopped(describeError(error));
    }
  };
  const stop = async () => {
    try {
      await chat.cancelGeneration({ conversationId, messageId: message.id });
    } catch (error) {
      onStopped(describeError(error));
    }
  };
  return (
    <article className={`message ${message.role}`} data-message-id={message.id} data-state={MessageState[message.state]} aria-busy={streaming}>
      <header>
        <strong>{author}</strong>
        <time dateTime={new Date(message.createdAt).toISOString()}>{new Date(message.createdAt).toLocaleTimeString()}</time>
        {message.state === MessageState.CANCELLED && <span className="tag">stopped</span>}
        {message.state === MessageState.FAILED && <span className="tag error">failed{message.error ? `: ${message.error}` : ""}</span>}
        {message.toolCallId && <span className="tag">tool result for {message.toolCallId}</span>}
      </header>
      {message.toolCallId ? (
        <pre className="tool-result" aria-label={`Result of tool call ${message.toolCallId}`}>{message.text}</pre>
      ) : (
        <div className="message-text">
          <MarkdownText text={message.text} />
          {streaming && <span className="cursor" aria-hidden="true" />}
        </div>
      )}
      {message.toolCalls.length > 0 && (
        <ul className="tool-calls" aria-label="Tool calls">
          {message.toolCalls.map((call) => (
            <li key={call.id} className="tool-call">
              <span aria-hidden="true">🔧 </span>
              <code>
                {call.name}({call.argumentsJson})
              </code>{" "}
              <small>call {call.id}</small>
            </li>
          ))}
        </ul>
      )}
      {message.attachments.length > 0 && (
        <ul className="attachments" aria-label="Attachments">
          {message.attachments.map((attachment) => (
            <li key={attachment.fileId}>
              <AttachmentView conversationId={conversationId} messageId={message.id} attachment={attachment} />
            </li>
          ))}
        </ul>
      )}
      <footer>
        {streaming && (
          <button type="button" className="stop" onClick={() => void stop()}>
            Stop answer
          </button>
        )}
        {!streaming && (
          <div className="reactions" role="group" aria-label="Reactions">
            {REACTIONS.map((emoji) => {
              const summary = message.reactions.find((r) => r.emoji === emoji);
              const mine = summary?.reactedByMe ?? false;
              return (
                <button
                  key={emoji}
                  type="button"
                  className={`reaction${mine ? " mine" : ""}${summary ? "" : " empty"}`}
                  aria-pressed={mine}
                  aria-label={`${NAMES[emoji]}${summary ? `, ${summary.count}` : ""}`}
                  onClick={() => void toggle(emoji, mine)}
                >
                  <span className="emoji">{emoji}</span>
                  {summary ? <span className="count">{summary.count}</span> : null}
                </button>
              );
            })}
          </div>
        )}
        {!streaming && (
          <div className="message-actions" role="group" aria-label="Actions">
            {message.text && <CopyButton text={message.text} />}
            {onEdit && (
              <button type="button" className="icon" onClick={() => onEdit(message)}>
                Edit and resend
              </button>
            )}
            {onRegenerate && (
              <button type="button" className="icon" onClick={() => onRegenerate(message)}>
                Regenerate
              </button>
            )}
          </div>
        )}
      </footer>
    </article>
  );
});

function AttachmentView({
  conversationId,
  messageId,
  attachment,
}: {
  conversationId: string;
  messageId: string;
  attachment: ChatMessageView["attachments"][number];
}) {
  const [url, setUrl] = useState("");
  const image = attachment.contentType.startsWith("image/") && !attachment.contentType.includes("svg");
  const fetchBlob = async (signal?: AbortSignal) => {
    const chunks: Uint8Array<ArrayBuffer>[] = [];
    for await (const part of chat.downloadAttachment({ conversationId, messageId, fileId: attachment.fileId }, { signal })) {
      if (part.data.case === "chunk") chunks.push(part.data.value as Uint8Array<ArrayBuffer>);
    }
    return URL.createObjectURL(new Blob(chunks, { type: image ? attachment.contentType : "application/octet-stream" }));
  };
  useEffect(() => {
    if (!image || attachment.sizeBytes > BigInt(INLINE_IMAGE_LIMIT)) return;
    const abort = new AbortController();
    let made = "";
    fetchBlob(abort.signal).then((u) => {
      made = u;
      setUrl(u);
    }, () => undefined);
    return () => {
      abort.abort();
      if (made) URL.revokeObjectURL(made);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [attachment.fileId]);
  const download = async () => {
    // The inline image's URL is the image's own (freed when it goes); a fetched one is freed after the save.
    saveBlob(url || (await fetchBlob()), attachment.filename, !url);
  };
  return (
    <span className="attachment">
      {url && <img src={url} alt={attachment.filename} className="inline-image" />}
      <button type="button" className="link" onClick={() => void download()}>
        {attachment.filename}
      </button>{" "}
      <small>({formatBytes(Number(attachment.sizeBytes))})</small>
    </span>
  );
}

/** A member as the others see them: their display name, else a short form of their id. */
export function memberName(names: Record<string, string>, userId: string): string {
  return names[userId] || `Member ${userId.slice(0, 8)}`;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  // Binary units, named as such (the CLI says MiB too): 5,000,000 bytes read "4.8 MB" before.
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 * 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return `${(bytes / 1024 / 1024 / 1024).toFixed(1)} GiB`;
}

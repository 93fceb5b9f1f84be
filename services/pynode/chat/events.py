"""A conversation's events as kept in its event stream: each event class (domain.py) to bytes and back.

The bytes are `{"k": kind, "d": data}` as before the classes existed, so processes of both versions read each
other's events during a rolling upgrade. Messages travel whole (with their reactions as user ids per emoji,
so each subscriber can be told whether it reacted); deltas carry only their new text.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson

from pynode.chat.domain import (
    Attachment,
    ChatEvent,
    ChatMessage,
    Conversation,
    ConversationDeleted,
    ConversationUpdated,
    DeltaEvent,
    MemberAdded,
    MemberRemoved,
    MessageEvent,
    ReactionEvent,
    Ready,
    Reload,
    ToolCall,
    TypingEvent,
)
from pynode.core.streams import EventStreams


def stream_name(conversation_id: uuid.UUID | str) -> str:
    """The event stream of one conversation."""
    return f"chat:conversation:{conversation_id}"


async def publish(streams: EventStreams, conversation_id: uuid.UUID, event: ChatEvent) -> str:
    """Append one event to a conversation's stream; returns its id."""
    return await streams.append(stream_name(conversation_id), encode(event))


async def publish_all(streams: EventStreams, conversation_id: uuid.UUID, events: list[ChatEvent]) -> list[str]:
    """Append events to a conversation's stream in order, in one round trip; returns their ids."""
    return await streams.append_many(stream_name(conversation_id), [encode(event) for event in events])


def message_data(message: ChatMessage) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "conversation_id": str(message.conversation_id),
        "role": message.role,
        "author_id": message.author_id,
        "text": message.text,
        "state": message.state,
        "created_at": message.created_at.isoformat(),
        "model": message.model,
        "finish_reason": message.finish_reason,
        "error": message.error,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "attachments": [a.__dict__ for a in message.attachments],
        "reply_to_id": str(message.reply_to_id) if message.reply_to_id else "",
        "last_seq": message.last_seq,
        "reactions": {emoji: sorted(users) for emoji, users in message.reactions.items()},
        "tool_calls": [c.__dict__ for c in message.tool_calls],
        "tool_call_id": message.tool_call_id,
    }


def message_of(data: dict[str, Any]) -> ChatMessage:
    return ChatMessage(
        id=uuid.UUID(data["id"]),
        conversation_id=uuid.UUID(data["conversation_id"]),
        role=data["role"],
        author_id=data["author_id"],
        text=data["text"],
        state=data["state"],
        created_at=datetime.fromisoformat(data["created_at"]),
        model=data["model"],
        finish_reason=data["finish_reason"],
        error=data["error"],
        prompt_tokens=data["prompt_tokens"],
        completion_tokens=data["completion_tokens"],
        attachments=[Attachment(**a) for a in data["attachments"]],
        reply_to_id=uuid.UUID(data["reply_to_id"]) if data["reply_to_id"] else None,
        last_seq=data["last_seq"],
        reactions={emoji: set(users) for emoji, users in data["reactions"].items()},
        # .get: events written by a process of the previous version have neither
        tool_calls=[ToolCall(**c) for c in data.get("tool_calls", ())],
        tool_call_id=data.get("tool_call_id", ""),
    )


def conversation_data(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.id),
        "owner_id": conversation.owner_id,
        "title": conversation.title,
        "model": conversation.model,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "member_ids": list(conversation.member_ids),  # for processes of the previous version (rolling upgrades)
        "member_names": dict(conversation.member_names),
    }


def conversation_of(data: dict[str, Any]) -> Conversation:
    return Conversation(
        uuid.UUID(data["id"]),
        data["owner_id"],
        data["title"],
        data["model"],
        datetime.fromisoformat(data["created_at"]),
        datetime.fromisoformat(data["updated_at"]),
        # Events written before names were kept carry the ids only.
        dict(data.get("member_names") or dict.fromkeys(data["member_ids"], "")),
    )


def _reactions_data(reactions: dict[str, set[str]]) -> dict[str, list[str]]:
    return {emoji: sorted(users) for emoji, users in reactions.items()}


def _data(event: ChatEvent) -> tuple[str, dict[str, Any]]:
    """The event's kind and JSON-safe data, as kept in the stream."""
    match event:
        case MessageEvent(message=message):
            return "message", message_data(message)
        case DeltaEvent(message_id=message_id, seq=seq, text=text):
            return "delta", {"message_id": message_id, "seq": seq, "text": text}
        case TypingEvent(user_id=user_id, typing=typing, expires_at=expires_at):
            data: dict[str, Any] = {"user_id": user_id, "typing": typing}
            if expires_at:
                data["expires_at"] = expires_at
            return "typing", data
        case ReactionEvent():
            return "reaction", {
                "message_id": event.message_id,
                "user_id": event.user_id,
                "emoji": event.emoji,
                "added": event.added,
                "reactions": _reactions_data(event.reactions),
            }
        case MemberAdded(user_id=user_id):
            return "member_added", {"user_id": user_id}
        case MemberRemoved(user_id=user_id):
            return "member_removed", {"user_id": user_id}
        case ConversationUpdated(conversation=conversation):
            return "conversation_updated", conversation_data(conversation)
        case ConversationDeleted():
            return "conversation_deleted", {}
        case Ready():
            return "ready", {}
        case Reload():
            return "reload", {}


def _event(kind: str, data: dict[str, Any]) -> ChatEvent | None:
    if kind == "message":
        return MessageEvent(message_of(data))
    if kind == "delta":
        return DeltaEvent(str(data["message_id"]), int(data["seq"]), str(data["text"]))
    if kind == "typing":
        return TypingEvent(str(data["user_id"]), bool(data["typing"]), str(data.get("expires_at") or ""))
    if kind == "reaction":
        reactions = {emoji: set(users) for emoji, users in data["reactions"].items()}
        return ReactionEvent(
            str(data["message_id"]), str(data["user_id"]), str(data["emoji"]), bool(data["added"]), reactions
        )
    if kind == "member_added":
        return MemberAdded(str(data["user_id"]))
    if kind == "member_removed":
        return MemberRemoved(str(data["user_id"]))
    if kind == "conversation_updated":
        return ConversationUpdated(conversation_of(data))
    if kind == "conversation_deleted":
        return ConversationDeleted()
    return None  # a kind of a newer version: nothing this one can show


def encode(event: ChatEvent) -> bytes:
    kind, data = _data(event)
    return orjson.dumps({"k": kind, "d": data})


def decode(event_id: str, payload: bytes) -> ChatEvent | None:
    """The event kept as `payload`, with its stream id; None for a kind this version does not know."""
    raw = orjson.loads(payload)
    event = _event(raw["k"], raw["d"])
    return replace(event, id=event_id) if event is not None else None

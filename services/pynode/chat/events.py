"""A conversation's events as kept in its event stream: ChatEvent to bytes and back.

Messages travel whole (with their reactions as user ids per emoji, so each subscriber can be told
whether it reacted); deltas carry only their new text.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson

from pynode.chat.domain import Attachment, ChatEvent, ChatMessage, Conversation
from pynode.core.streams import EventStreams


def stream_name(conversation_id: uuid.UUID | str) -> str:
    """The event stream of one conversation."""
    return f"chat:conversation:{conversation_id}"


async def publish(streams: EventStreams, conversation_id: uuid.UUID, kind: str, data: dict[str, Any]) -> str:
    """Append one event to a conversation's stream; returns its id."""
    return await streams.append(stream_name(conversation_id), encode(ChatEvent(kind, data)))


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


def encode(event: ChatEvent) -> bytes:
    return orjson.dumps({"k": event.kind, "d": event.data})


def decode(event_id: str, payload: bytes) -> ChatEvent:
    raw = orjson.loads(payload)
    return ChatEvent(raw["k"], raw["d"], event_id)

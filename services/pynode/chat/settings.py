"""The chat service's settings: its limits, defaults and generation leases."""

from __future__ import annotations

from pydantic import Field

from pynode.core.settings import Section


class ChatSettings(Section):
    """Each field is `DEVPYNODE_<NAME>`; its peers (auth, AI router, files) are found through PeerAddresses."""

    chat_default_model: str = Field(
        "default", description="Model of new conversations that name none (the AI router's `default` alias)."
    )
    chat_max_members: int = Field(50, ge=1, description="Members one conversation may have, the owner included.")
    chat_messages_per_minute: int = Field(60, ge=0, description="Messages one user may send per minute (0: no limit).")
    chat_conversations_per_minute: int = Field(
        30, ge=0, description="Conversations one user may create per minute (0: no limit)."
    )
    chat_streams_per_user: int = Field(
        16, ge=0, description="StreamEvents calls one user may hold open at once on one process (0: no limit)."
    )
    chat_streams_per_address: int = Field(
        64,
        ge=0,
        description="StreamEvents calls one client address may hold open at once on one process, whatever its "
        "accounts (0: no limit).",
    )
    chat_invites_per_minute: int = Field(
        30, ge=0, description="Invitations one user may send per minute (0: no limit)."
    )
    chat_reactions_per_minute: int = Field(
        60, ge=0, description="Reactions one user may add or remove per minute (0: no limit)."
    )
    chat_context_chars: int = Field(
        16_000, ge=256, description="History given to the model, in characters (newest first; about 4 per token)."
    )
    chat_history_messages: int = Field(200, ge=1, description="Most messages of history read for one answer.")
    chat_attachment_text_bytes: int = Field(
        64 * 1024, ge=0, description="Largest text attachment given to the model as context."
    )
    chat_image_bytes: int = Field(
        1_500_000,
        ge=0,
        description="Pictures given to the model with the newest member message, in bytes in all (they travel in "
        "the AI request: keep it under DEVPYNODE_MAX_MESSAGE_BYTES); pictures beyond it are named, not shown.",
    )
    chat_typing_seconds: float = Field(
        5.0, gt=0, description="How long a member shows as typing after SendTyping, unless renewed."
    )
    chat_fast_exchange_commit: bool = Field(
        False,
        description="On PostgreSQL, commit each new exchange (the member's message and the reply it starts) "
        "without waiting for the write-ahead log's flush to disk (synchronous_commit off for that transaction "
        "only): the first token comes a disk flush sooner, and a crash of the database server may lose the "
        "exchanges of its last fraction of a second (never corrupting anything; each answer's end is still "
        "committed durably).",
    )
    chat_lease_seconds: float = Field(
        15.0,
        gt=0,
        description="A streaming answer's lease: renewed by the process writing it; once expired, any chat "
        "process marks the answer failed (its writer died), keeping the text so far.",
    )

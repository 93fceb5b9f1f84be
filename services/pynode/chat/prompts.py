"""Prompt assembly: a conversation's history for the model, newest kept, trimmed to the context budget.

The newest messages come read ahead (recent.py) with the exchange being answered; the rest is read in one
query of no more than the budget left can hold. Text attachments of members' messages are given inline;
picture attachments of the newest member message go as pictures (for vision models: the AI router refuses
them for others, and older pictures are never sent again, so one picture cannot fail every later answer).
AI replies keep their tool calls and members' tool messages their call ids, so the model sees its calls
and their results.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from pynode.chat.domain import STREAMING, TOOL, USER, ChatMessage
from pynode.chat.ports import AttachmentReader, MessageRepository, PromptMessage
from pynode.chat.recent import PAGE as PROMPT_PAGE
from pynode.core.errors import DomainError

TEXT_TYPES = ("text/", "application/json")
PICTURE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


@dataclass(frozen=True)
class PromptLimits:
    """How much history a prompt holds (settings)."""

    context_chars: int
    history_messages: int
    attachment_text_bytes: int
    image_bytes: int = 1_500_000  # pictures of the newest member message, in all


class PromptAssembler:
    """Builds the messages given to the model for one reply."""

    def __init__(self, messages: MessageRepository, attachments: AttachmentReader, limits: PromptLimits) -> None:
        self._messages = messages
        self._attachments = attachments
        self.limits = limits

    async def prompt(
        self, reply: ChatMessage, asked: ChatMessage, recent: list[ChatMessage] | None
    ) -> list[PromptMessage]:
        """The history ending with `asked` (oldest first). `recent` is the conversation's newest messages read
        ahead (None: not read; it is read here)."""
        budget = self.limits.context_chars
        chosen: list[PromptMessage] = []
        pictured = False  # the newest member message's pictures are taken; older ones are not

        async def take(message: ChatMessage) -> bool:
            nonlocal budget, pictured
            content = message.text
            images: tuple[bytes, ...] = ()
            if message.role == USER and message.attachments:
                content = await self._with_attachments(message) + content
                if not pictured:
                    notes, images = await self._pictures(message)
                    content = notes + content
            if message.role == USER:
                pictured = True
            calls = tuple(message.tool_calls)
            if len(content) > budget:
                if not chosen:  # the newest message always goes, cut to fit
                    chosen.append(PromptMessage(message.role, content[-budget:], calls, message.tool_call_id, images))
                return False
            budget -= len(content)
            chosen.append(PromptMessage(message.role, content, calls, message.tool_call_id, images))
            return True

        if not await take(asked):
            return list(reversed(chosen))
        before = (asked.created_at, asked.id)
        page = recent[: self.limits.history_messages] if recent is not None else None
        read = 0
        if page is not None:  # the newest, read ahead (recent.py): no read at all when they fill the budget
            read = len(page)
            for message in page:
                if message.id in (reply.id, asked.id) or message.state == STREAMING or not _says(message):
                    continue
                if not await take(message):
                    return list(reversed(chosen))
            if len(page) < PROMPT_PAGE:
                return list(reversed(chosen))  # the whole conversation was in it
            before = (page[-1].created_at, page[-1].id)
        if read < self.limits.history_messages:
            # The rest in one read, of no more than the budget left can hold (the database sums the texts):
            # a long conversation costs one round trip, not one per page back to the budget.
            for message in await self._messages.history_within(
                reply.conversation_id, before, budget, self.limits.history_messages - read
            ):
                if message.id in (reply.id, asked.id):
                    continue
                if not await take(message):
                    break
        return list(reversed(chosen))

    async def _pictures(self, message: ChatMessage) -> tuple[str, tuple[bytes, ...]]:
        """The pictures attached to `message` that fit the bound, and a note naming those that did not."""
        left = self.limits.image_bytes
        notes, images = [], []
        for attachment in message.attachments:
            if attachment.content_type not in PICTURE_TYPES:
                continue
            if attachment.size_bytes > left:
                notes.append(f"[Attached picture {attachment.filename}: too large to show]\n\n")
                continue
            data = bytearray()
            with contextlib.suppress(DomainError):  # a deleted file is left out, not a failed answer
                async for chunk in self._attachments.read(attachment.file_id, message.author_id):
                    if isinstance(chunk, bytes):
                        data += chunk
            if data and len(data) <= left:
                left -= len(data)
                images.append(bytes(data))
        return "".join(notes), tuple(images)

    async def _with_attachments(self, message: ChatMessage) -> str:
        parts = []
        for attachment in message.attachments:
            if not attachment.content_type.startswith(TEXT_TYPES):
                continue
            if attachment.size_bytes > self.limits.attachment_text_bytes:
                parts.append(f"[Attached file {attachment.filename}: too large to include]\n\n")
                continue
            data = bytearray()
            with contextlib.suppress(DomainError):  # a deleted file is left out, not a failed answer
                async for chunk in self._attachments.read(attachment.file_id, message.author_id):
                    if isinstance(chunk, bytes):
                        data += chunk
            text = data[: self.limits.attachment_text_bytes].decode("utf-8", "replace")
            parts.append(f"[Attached file {attachment.filename}]\n{text}\n[End of {attachment.filename}]\n\n")
        return "".join(parts)


def _says(message: ChatMessage) -> bool:
    """Whether a message belongs in a prompt: it has text, or tool calls, or is a tool result."""
    return bool(message.text or message.tool_calls or message.role == TOOL)

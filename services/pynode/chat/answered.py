"""What follows an answer's end, whoever saved it (its job, or the sweep of lost answers): the newest messages
change, and an untitled conversation takes a title from its first exchange."""

from __future__ import annotations

from pynode.chat.domain import ChatMessage, ConversationUpdated
from pynode.chat.events import publish
from pynode.chat.membership import CachedConversations
from pynode.chat.ports import ConversationRepository, MessageRepository
from pynode.chat.recent import RecentMessages
from pynode.core.streams import EventStreams
from pynode.core.text import visible


def title_from(text: str, limit: int = 60) -> str:
    """A conversation title from its first message: the first words, cut at a word boundary, without the
    characters a title may not hold (a message may)."""
    # Split first: line breaks are controls `visible` drops, and "one\ntwo" must not become "onetwo".
    words = visible(" ".join(text.split()))
    if len(words) <= limit:
        return words
    cut = words[:limit].rsplit(" ", 1)[0] or words[:limit]
    return cut + "…"


class AnswerEnds:
    """Called once an answer's end is saved."""

    def __init__(
        self,
        conversations: ConversationRepository,
        messages: MessageRepository,
        cached: CachedConversations,
        recent: RecentMessages,
        streams: EventStreams,
    ) -> None:
        self._conversations = conversations
        self._messages = messages
        self._cached = cached
        self._recent = recent
        self._streams = streams

    async def ended(self, reply: ChatMessage) -> None:
        await self._recent.changed(reply.conversation_id, [reply])
        conversation = await self._conversations.conversation(reply.conversation_id)
        if conversation is None or conversation.title or reply.reply_to_id is None:
            return
        asked = await self._messages.message(reply.reply_to_id)
        if asked is None:
            return
        conversation.title = title_from(asked.text) or title_from(reply.text)
        await self._conversations.update_conversation(conversation.id, conversation.title, None)
        await self._cached.changed(conversation.id)
        await publish(self._streams, conversation.id, ConversationUpdated(conversation))

"""Hostile chat input: forged positions that overflow, floods of typing and reactions, and text that would
take over a reader's terminal. Each is refused with the right status (never INTERNAL), or absorbed."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import grpc
import pytest
from devpynode.auth.v1 import auth_pb2
from devpynode.chat.v1 import chat_pb2
from google.rpc import error_details_pb2

from pynode.app.server import MeshServer
from pynode.chat.answered import title_from
from pynode.core.text import for_terminal, reaction_problem
from tests.chat.conftest import Member, Start, Subscriber
from tests.client import PASSWORD, MeshClient, eventually, fails, new_email
from tests.conftest import auth_of

ID = "4c1f6c38-7f0c-4d9b-9d49-000000000000"


def _token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _invalid(error: Any, field: str, reason: str) -> None:
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT, error
    assert error.violations() == {field: reason}, error


# --- #9: positions that parse, then overflow ----------------------------------------------------------------


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_page_token_times_outside_utc_range_are_invalid_argument(chat: Start, stamp: str) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create()
    token = _token({"t": stamp, "i": ID})
    for call in (
        alice.stub.ListConversations(chat_pb2.ListConversationsRequest(page_token=token), metadata=alice.md),
        alice.stub.ListMessages(
            chat_pb2.ListMessagesRequest(conversation_id=conversation.id, page_token=token), metadata=alice.md
        ),
        alice.stub.ListInvitations(chat_pb2.ListInvitationsRequest(page_token=token), metadata=alice.md),
    ):
        _invalid(await fails(call), "page_token", "BAD_PAGE_TOKEN")


async def test_audit_page_token_beyond_64_bits_is_invalid_argument(client: MeshClient, mesh: MeshServer) -> None:
    email = new_email()
    await auth_of(mesh).service.create_admin(email, PASSWORD, "Admin")
    await client.login(email)
    for before in (2**63, -(2**63) - 1, 10**30):
        error = await fails(
            client.admin.ListAuditEvents(
                auth_pb2.ListAuditEventsRequest(page_token=_token({"b": before, "f": "|"})), metadata=client.md()
            )
        )
        _invalid(error, "page_token", "BAD_PAGE_TOKEN")


@pytest.mark.parametrize("after", ["99999999999999999999-0", "0-18446744073709551616", "1²-0"])
async def test_event_ids_beyond_64_bits_are_invalid_argument(chat: Start, after: str) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create()
    call = alice.events(conversation.id, after=after)
    error = await fails(call.read())
    _invalid(error, "after", "BAD_EVENT_ID")


# --- #10: floods -------------------------------------------------------------------------------------------


async def _typing(member: Member, conversation_id: str, typing: bool) -> None:
    await member.stub.SendTyping(
        chat_pb2.SendTypingRequest(conversation_id=conversation_id, typing=typing), metadata=member.md
    )


async def test_alternating_typing_publishes_one_start_and_one_stop(chat: Start) -> None:
    # A start is claimed once per renewal share of the typing time (1.5 s of the default 5 s): a long typing time
    # keeps the whole flood inside one share however slowly a loaded machine serves the 40 calls.
    alice, bob = await chat(2, chat_typing_seconds=60)
    conversation = await alice.create(model="builtin/echo")
    await alice.invite(conversation.id, bob)
    watching = Subscriber(alice, conversation.id)
    await watching.ready()
    for _ in range(20):
        await _typing(bob, conversation.id, True)
        await _typing(bob, conversation.id, False)
    await alice.send(conversation.id, "a marker after the flood")  # events arrive in order: the flood is in
    await eventually(lambda: bool(watching.of("message")))
    await watching.stop()
    assert [t.typing for t in watching.of("typing")] == [True, False]


async def test_reaction_floods_are_refused_with_retry_info(chat: Start) -> None:
    (alice,) = await chat(1, chat_reactions_per_minute=4)
    conversation = await alice.create(model="builtin/echo")
    sent = await alice.send(conversation.id, "react to me")
    ids = {"conversation_id": conversation.id, "message_id": sent.user_message.id}
    for _ in range(2):
        await alice.stub.AddReaction(chat_pb2.AddReactionRequest(emoji="👍", **ids), metadata=alice.md)
        await alice.stub.RemoveReaction(chat_pb2.RemoveReactionRequest(emoji="👍", **ids), metadata=alice.md)
    refused = await fails(alice.stub.AddReaction(chat_pb2.AddReactionRequest(emoji="👍", **ids), metadata=alice.md))
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    retry = refused.detail(error_details_pb2.RetryInfo)
    assert retry is not None and retry.retry_delay.seconds > 0


# --- #11: text that hides or takes over a terminal -----------------------------------------------------------


@pytest.mark.parametrize("title", ["\x1bc reset", "evil\u202etxt.exe", "zero\u200bwidth", "\u200b"])
async def test_titles_follow_one_rule_on_create_and_update(chat: Start, title: str) -> None:
    (alice,) = await chat(1)
    refused = await fails(
        alice.stub.CreateConversation(chat_pb2.CreateConversationRequest(title=title), metadata=alice.md)
    )
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT and "title" in refused.violations()
    conversation = await alice.create()
    refused = await fails(
        alice.stub.UpdateConversation(
            chat_pb2.UpdateConversationRequest(conversation_id=conversation.id, title=title), metadata=alice.md
        )
    )
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT and "title" in refused.violations()


async def test_a_title_taken_from_a_message_drops_its_controls(chat: Start) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create(model="builtin/echo")
    await alice.send(conversation.id, "\x1b[2Jhello \u202eworld")

    async def title() -> str:
        got = await alice.stub.GetConversation(
            chat_pb2.GetConversationRequest(conversation_id=conversation.id), metadata=alice.md
        )
        return got.conversation.title

    for _ in range(100):  # the title is written once the answer has ended, just after it is sent
        if await title():
            break
        await asyncio.sleep(0.05)
    assert await title() == "[2Jhello world"


def test_a_title_keeps_the_words_apart_where_the_message_broke_its_lines() -> None:
    # Issue 26: "Hello\n\nHere is code" became "HelloHere is code" (the line breaks were dropped as controls).
    assert title_from("Hello *there*\n\nHere is code:\r\n\tdef f") == "Hello *there* Here is code: def f"


@pytest.mark.parametrize("emoji", ["\x1bc", "👍\u200b", "\u202e👍", "a b", "👍👍", "--", "\u200b"])
async def test_reactions_are_one_emoji_or_a_short_word(chat: Start, emoji: str) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create(model="builtin/echo")
    sent = await alice.send(conversation.id, "react to me")
    request = chat_pb2.AddReactionRequest(conversation_id=conversation.id, message_id=sent.user_message.id, emoji=emoji)
    refused = await fails(alice.stub.AddReaction(request, metadata=alice.md))
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT and "emoji" in refused.violations()


@pytest.mark.parametrize("emoji", ["👍", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🇫🇷", "1️⃣", "❤️", "+1", ":tada:"])
def test_reactions_people_use_pass(emoji: str) -> None:
    assert reaction_problem(emoji) is None


def test_terminal_output_shows_escapes_instead_of_obeying_them() -> None:
    assert for_terminal("hi\x1bc\u202eevil\x9b\nnext\u200b") == "hi\\x1bc\\u202eevil\\x9b\nnext\\u200b"
    assert for_terminal("a\nb\tc", newlines=False) == "a\\x0ab\\x09c"
    assert for_terminal("👨\u200d👩\u200d👧 fine") == "👨\u200d👩\u200d👧 fine"

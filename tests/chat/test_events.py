"""StreamEvents: members see each other live, reattach to running answers, resume after an id, reload."""

from __future__ import annotations

import grpc
from devpynode.chat.v1 import chat_pb2

from tests.ai.fakes import FakeProvider
from tests.chat.conftest import ANSWER, WORDS, Member, Start, Subscriber, reply_text
from tests.client import MeshClient, eventually, fails


async def test_members_see_each_others_messages_answers_typing_and_reactions_live(
    chat: Start, ollama: FakeProvider
) -> None:
    alice, bob = await chat(2, chat_typing_seconds=0.4)
    conversation = await alice.create()
    await alice.invite(conversation.id, bob)
    watching = Subscriber(bob, conversation.id)
    await watching.ready()
    sent = await alice.send(conversation.id, "hi bob")
    await eventually(lambda: watching.final(sent.reply.id) is not None)
    messages = watching.of("message")
    assert messages[0].id == sent.user_message.id and messages[0].author_id == alice.id
    assert messages[1].id == sent.reply.id and messages[1].state == chat_pb2.MESSAGE_STATE_STREAMING
    text, seqs = reply_text(watching.events, sent.reply.id)
    assert text == ANSWER and seqs == list(range(len(seqs)))
    final = watching.final(sent.reply.id)
    assert final is not None and final.text == ANSWER and final.state == chat_pb2.MESSAGE_STATE_COMPLETE

    # Typing shows with an expiry, and ends on its own when not renewed.
    alice_watching = Subscriber(alice, conversation.id)
    await alice_watching.ready()
    await bob.stub.SendTyping(chat_pb2.SendTypingRequest(conversation_id=conversation.id, typing=True), metadata=bob.md)
    await eventually(lambda: len(alice_watching.of("typing")) == 1)
    started = alice_watching.of("typing")[0]
    assert started.user_id == bob.id and started.typing and started.HasField("expires_at")
    await eventually(lambda: len(alice_watching.of("typing")) == 2, 5)
    assert not alice_watching.of("typing")[1].typing

    # Reactions: counts per kind, and reacted_by_me is each subscriber's own.
    await bob.stub.AddReaction(
        chat_pb2.AddReactionRequest(conversation_id=conversation.id, message_id=sent.reply.id, emoji="👍"),
        metadata=bob.md,
    )
    await eventually(lambda: bool(alice_watching.of("reaction")) and bool(watching.of("reaction")))
    for subscriber, mine in ((alice_watching, False), (watching, True)):
        event = subscriber.of("reaction")[-1]
        assert event.message_id == sent.reply.id and event.user_id == bob.id and event.added
        assert [(r.emoji, r.count, r.reacted_by_me) for r in event.reactions] == [("👍", 1, mine)]
    ids = [e.id for e in watching.events]
    assert len(set(ids)) == len(ids)
    await watching.stop()
    await alice_watching.stop()


async def test_a_member_reattaches_to_a_running_answer_with_no_gap_and_no_duplicate(
    chat: Start, ollama: FakeProvider
) -> None:
    # The answer pauses where the test says (no timing): a checkpoint after four words, four more words kept in
    # the stream since, then a late member attaches while it is still streaming. A long lease keeps the periodic
    # renewal (every 2 s) out of the way; one that runs anyway only moves the checkpoint further.
    alice, bob = await chat(2, chat_lease_seconds=60)
    conversation = await alice.create()
    await alice.invite(conversation.id, bob)
    watching = Subscriber(alice, conversation.id)  # what the conversation's stream holds, as it grows
    await watching.ready()
    ollama.script.holds = (4, 8)
    first_four, first_eight = "".join(WORDS[:4]), "".join(WORDS[:8])
    call = alice.send_call(conversation.id, "a long answer")
    seen, reply_id = "", ""
    async for response in call:  # deltas that arrive together are sent as one: count the words
        if response.WhichOneof("event") == "delta":
            reply_id = response.delta.message_id
            seen += response.delta.text
        if seen == first_four:
            break
    call.cancel()  # alice's tab closes; the answer goes on

    def written() -> str:
        return "".join(d.text for d in watching.of("delta") if d.message_id == reply_id)

    await eventually(lambda: written() == first_four)
    await alice.parts.runner.renew()  # the checkpoint holds the first four words
    ollama.release()
    await eventually(lambda: written() == first_eight)  # four more, in the stream after the checkpoint
    late = Subscriber(bob, conversation.id)
    await late.ready()
    await eventually(lambda: any(m.id == reply_id for m in late.of("message")))
    snapshot = next(m for m in late.of("message") if m.id == reply_id)
    assert snapshot.state == chat_pb2.MESSAGE_STATE_STREAMING and snapshot.text == first_eight
    ollama.release()
    await eventually(lambda: late.final(reply_id) is not None, 10)
    text, seqs = reply_text(late.events, reply_id)
    assert text == ANSWER and seqs == list(range(len(seqs)))
    await late.stop()
    await watching.stop()


async def test_resuming_after_an_id_replays_exactly_what_was_missed(chat: Start) -> None:
    alice, bob = await chat(2)
    conversation = await alice.create(model="builtin/echo")
    await alice.invite(conversation.id, bob)
    first = Subscriber(bob, conversation.id)
    await first.ready()
    one = await alice.send(conversation.id, "one")
    await eventually(lambda: first.final(one.reply.id) is not None)
    last_seen = first.events[-1].id
    await first.stop()
    # While bob is away: a message, a reaction, a title change.
    two = await alice.send(conversation.id, "two words")
    await alice.stub.AddReaction(
        chat_pb2.AddReactionRequest(conversation_id=conversation.id, message_id=one.reply.id, emoji="🎉"),
        metadata=alice.md,
    )
    resumed = Subscriber(bob, conversation.id, after=last_seen)
    await eventually(lambda: bool(resumed.of("reaction")))
    kinds = resumed.kinds()
    assert "ready" not in kinds and "reload" not in kinds
    assert [m.id for m in resumed.of("message")][:2] == [two.user_message.id, two.reply.id]
    assert reply_text(resumed.events, two.reply.id)[0] == "two words"
    assert all(e.id > last_seen or len(e.id) != len(last_seen) for e in resumed.events)
    assert one.user_message.id not in [m.id for m in resumed.of("message")]
    await resumed.stop()


async def test_a_client_away_too_long_is_told_to_reload(chat: Start) -> None:
    alice, bob = await chat(2, stream_max_events=100, chat_reactions_per_minute=0)  # events, not the limit
    conversation = await alice.create(model="builtin/echo")
    await alice.invite(conversation.id, bob)
    watcher = Subscriber(bob, conversation.id)
    start = await watcher.ready()
    await watcher.stop()
    sent = await alice.send(conversation.id, "x")
    request = chat_pb2.AddReactionRequest(conversation_id=conversation.id, message_id=sent.reply.id, emoji="🔥")
    for _ in range(60):
        await alice.stub.AddReaction(request, metadata=alice.md)
        await alice.stub.RemoveReaction(chat_pb2.RemoveReactionRequest(**{
            "conversation_id": conversation.id, "message_id": sent.reply.id, "emoji": "🔥"
        }), metadata=alice.md)  # fmt: skip
    again = Subscriber(bob, conversation.id, after=start)
    cursor = await again.ready()
    assert again.kinds()[0] == "reload" and cursor != start
    await alice.send(conversation.id, "after the reload")
    await eventually(lambda: len(again.of("message")) >= 2)
    await again.stop()
    bad = await fails(_first(bob.events(conversation.id, after="not-an-id")))
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.violations() == {"after": "BAD_EVENT_ID"}


async def _first(call: object) -> object:
    async for event in call:  # type: ignore[attr-defined]
        return event
    return None


async def test_a_removed_member_stops_receiving_and_a_deleted_conversation_ends_streams(chat: Start) -> None:
    alice, bob, carol = await chat(3)
    conversation = await alice.create(model="builtin/echo")
    await alice.invite(conversation.id, bob)
    await alice.invite(conversation.id, carol)
    bobs = Subscriber(bob, conversation.id)
    carols = Subscriber(carol, conversation.id)
    await bobs.ready()
    await carols.ready()
    await alice.stub.RemoveMember(
        chat_pb2.RemoveMemberRequest(conversation_id=conversation.id, user_id=bob.id), metadata=alice.md
    )
    await eventually(lambda: bobs.ended)
    assert bobs.of("member_removed")[-1].user_id == bob.id
    await alice.send(conversation.id, "bob cannot see this")
    await eventually(lambda: len(carols.of("message")) >= 2)
    assert len(bobs.of("message")) == 0
    await alice.stub.DeleteConversation(
        chat_pb2.DeleteConversationRequest(conversation_id=conversation.id), metadata=alice.md
    )
    await eventually(lambda: carols.ended)
    assert carols.kinds()[-1] == "conversation_deleted"


async def test_event_streams_per_user_are_bounded(chat: Start) -> None:
    (alice,) = await chat(1, chat_streams_per_user=2)
    conversation = await alice.create(model="builtin/echo")
    first, second = Subscriber(alice, conversation.id), Subscriber(alice, conversation.id)
    await first.ready()
    await second.ready()
    third = Subscriber(alice, conversation.id)
    await eventually(lambda: third.ended)
    assert third.error is not None and third.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await first.stop()
    fourth = Subscriber(alice, conversation.id)  # one closed: room again
    await fourth.ready()
    await second.stop()
    await fourth.stop()


async def test_event_streams_per_address_are_bounded_whatever_the_accounts(chat: Start) -> None:
    (alice,) = await chat(1, chat_streams_per_address=2)

    async def account(address: str) -> tuple[Member, chat_pb2.Conversation]:
        user = MeshClient(alice.user.channel, address)
        registered = await user.register()
        member = Member(user, alice.mesh, registered.user.id)
        return member, await member.create(model="builtin/echo")

    followers = []
    for _ in range(2):  # two accounts from one address, one stream each (far below the per-user cap)
        member, conversation = await account(alice.user.address)
        follower = Subscriber(member, conversation.id)
        await follower.ready()
        followers.append(follower)
    member, conversation = await account(alice.user.address)
    third = Subscriber(member, conversation.id)
    await eventually(lambda: third.ended)
    assert third.error is not None and third.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    elsewhere, theirs = await account(alice.user.as_other_address().address)
    other = Subscriber(elsewhere, theirs.id)
    await other.ready()  # another address is not affected
    await followers[0].stop()
    again = Subscriber(member, conversation.id)  # one closed: room again for the address
    await again.ready()
    for follower in (followers[1], other, again):
        await follower.stop()

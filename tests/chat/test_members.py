"""Conversations and members: who may see and do what; outsiders learn nothing."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from devpynode.chat.v1 import chat_pb2

from tests.chat.conftest import Member, Start, Subscriber
from tests.client import eventually, fails

MISSING = "6f1c1bc4-8a0e-4c38-9a52-2f1a1b1b1b1b"


async def test_create_get_list_update_and_delete(chat: Start) -> None:
    (alice,) = await chat(1)
    first = await alice.create(title="First", model="builtin/echo")
    second = await alice.create(title="Second", model="")
    assert first.owner_id == alice.id and list(first.member_ids) == [alice.id] and second.model == "default"
    await alice.send(first.id, "bump")  # activity moves it to the top
    listed = await alice.stub.ListConversations(chat_pb2.ListConversationsRequest(page_size=1), metadata=alice.md)
    assert [c.id for c in listed.conversations] == [first.id] and listed.next_page_token
    rest = await alice.stub.ListConversations(
        chat_pb2.ListConversationsRequest(page_size=1, page_token=listed.next_page_token), metadata=alice.md
    )
    assert [c.id for c in rest.conversations] == [second.id] and not rest.next_page_token
    updated = await alice.stub.UpdateConversation(
        chat_pb2.UpdateConversationRequest(conversation_id=second.id, title="Renamed"), metadata=alice.md
    )
    assert updated.conversation.title == "Renamed" and updated.conversation.model == "default"
    switched = await alice.stub.UpdateConversation(
        chat_pb2.UpdateConversationRequest(conversation_id=second.id, model="builtin/echo"), metadata=alice.md
    )
    assert switched.conversation.model == "builtin/echo" and switched.conversation.title == "Renamed"
    await alice.stub.DeleteConversation(chat_pb2.DeleteConversationRequest(conversation_id=first.id), metadata=alice.md)
    gone = await fails(
        alice.stub.GetConversation(chat_pb2.GetConversationRequest(conversation_id=first.id), metadata=alice.md)
    )
    assert gone.code == grpc.StatusCode.NOT_FOUND


async def test_members_are_shown_by_their_display_names(chat: Start) -> None:
    alice, bob = await chat(2)
    conversation = await alice.create()
    assert dict(conversation.member_names) == {alice.id: "Test User"}
    await alice.invite(conversation.id, bob)
    seen = await bob.stub.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=conversation.id), metadata=bob.md
    )
    assert dict(seen.conversation.member_names) == {alice.id: "Test User", bob.id: "Test User"}
    listed = await bob.stub.ListConversations(chat_pb2.ListConversationsRequest(), metadata=bob.md)
    assert dict(listed.conversations[0].member_names) == dict(seen.conversation.member_names)


async def test_invitations_by_email_never_reveal_whether_an_account_exists(chat: Start) -> None:
    alice, bob = await chat(2)
    conversation = await alice.create()
    watching = Subscriber(alice, conversation.id)
    await watching.ready()
    known = await alice.stub.AddMember(
        chat_pb2.AddMemberRequest(conversation_id=conversation.id, email=bob.email), metadata=alice.md
    )
    unknown = await alice.stub.AddMember(
        chat_pb2.AddMemberRequest(conversation_id=conversation.id, email="nobody-here@example.com"), metadata=alice.md
    )
    # The same answer, byte for byte: an invitee is no member (nor named anywhere) until they accept.
    assert known == unknown and list(known.conversation.member_ids) == [alice.id]
    got = await alice.stub.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=conversation.id), metadata=alice.md
    )
    assert list(got.conversation.member_ids) == [alice.id]
    # Not a member: bob sees nothing of the conversation but his invitation.
    outside = await fails(bob.messages(conversation.id))
    assert outside.code == grpc.StatusCode.NOT_FOUND
    listed = await bob.stub.ListConversations(chat_pb2.ListConversationsRequest(), metadata=bob.md)
    assert not listed.conversations
    pending = await bob.stub.ListInvitations(chat_pb2.ListInvitationsRequest(), metadata=bob.md)
    assert [(i.conversation_id, i.inviter_id, i.inviter_name) for i in pending.invitations] == [
        (conversation.id, alice.id, "Test User")
    ]
    again = await alice.stub.AddMember(
        chat_pb2.AddMemberRequest(conversation_id=conversation.id, user_id=bob.id), metadata=alice.md
    )
    assert again == known  # by id too: an invitation, once
    pending = await bob.stub.ListInvitations(chat_pb2.ListInvitationsRequest(), metadata=bob.md)
    assert len(pending.invitations) == 1
    assert "member_added" not in watching.kinds()

    accepted = await bob.stub.AcceptInvitation(
        chat_pb2.AcceptInvitationRequest(conversation_id=conversation.id), metadata=bob.md
    )
    assert list(accepted.conversation.member_ids) == [alice.id, bob.id]
    await eventually(lambda: "member_added" in watching.kinds())
    await watching.stop()
    assert [e.user_id for e in watching.of("member_added")] == [bob.id]
    pending = await bob.stub.ListInvitations(chat_pb2.ListInvitationsRequest(), metadata=bob.md)
    assert not pending.invitations
    twice = await fails(
        bob.stub.AcceptInvitation(chat_pb2.AcceptInvitationRequest(conversation_id=conversation.id), metadata=bob.md)
    )
    assert twice.code == grpc.StatusCode.NOT_FOUND and twice.reason == "INVITATION_NOT_FOUND"
    neither = await fails(
        alice.stub.AddMember(chat_pb2.AddMemberRequest(conversation_id=conversation.id), metadata=alice.md)
    )
    assert neither.code == grpc.StatusCode.INVALID_ARGUMENT
    stranger = await fails(
        alice.stub.AddMember(
            chat_pb2.AddMemberRequest(conversation_id=conversation.id, user_id=MISSING), metadata=alice.md
        )
    )
    assert stranger.code == grpc.StatusCode.NOT_FOUND
    listed = await bob.stub.ListConversations(chat_pb2.ListConversationsRequest(), metadata=bob.md)
    assert [c.id for c in listed.conversations] == [conversation.id]


async def test_declined_invitations_and_deleted_conversations_leave_nothing(chat: Start) -> None:
    alice, bob = await chat(2)
    first, second = await alice.create(title="one"), await alice.create(title="two")
    for conversation in (first, second):
        await alice.stub.AddMember(
            chat_pb2.AddMemberRequest(conversation_id=conversation.id, email=bob.email), metadata=alice.md
        )
    pending = await bob.stub.ListInvitations(chat_pb2.ListInvitationsRequest(page_size=1), metadata=bob.md)
    assert [i.title for i in pending.invitations] == ["two"] and pending.next_page_token
    rest = await bob.stub.ListInvitations(
        chat_pb2.ListInvitationsRequest(page_token=pending.next_page_token), metadata=bob.md
    )
    assert [i.title for i in rest.invitations] == ["one"] and not rest.next_page_token
    await bob.stub.DeclineInvitation(chat_pb2.DeclineInvitationRequest(conversation_id=first.id), metadata=bob.md)
    await alice.stub.DeleteConversation(
        chat_pb2.DeleteConversationRequest(conversation_id=second.id), metadata=alice.md
    )
    pending = await bob.stub.ListInvitations(chat_pb2.ListInvitationsRequest(), metadata=bob.md)
    assert not pending.invitations
    for conversation in (first, second):
        gone = await fails(
            bob.stub.AcceptInvitation(
                chat_pb2.AcceptInvitationRequest(conversation_id=conversation.id), metadata=bob.md
            )
        )
        assert gone.code == grpc.StatusCode.NOT_FOUND and gone.reason == "INVITATION_NOT_FOUND"


async def test_members_leave_owners_remove_and_only_owners_manage(chat: Start) -> None:
    alice, bob, carol = await chat(3)
    conversation = await alice.create(model="builtin/echo")
    await alice.invite(conversation.id, bob)
    await alice.invite(conversation.id, carol)
    # A member writes and reads, but cannot manage.
    await bob.send(conversation.id, "hello all")
    for call in (
        bob.stub.AddMember(
            chat_pb2.AddMemberRequest(conversation_id=conversation.id, user_id=carol.id), metadata=bob.md
        ),
        bob.stub.RemoveMember(
            chat_pb2.RemoveMemberRequest(conversation_id=conversation.id, user_id=carol.id), metadata=bob.md
        ),
        bob.stub.DeleteConversation(
            chat_pb2.DeleteConversationRequest(conversation_id=conversation.id), metadata=bob.md
        ),
        bob.stub.UpdateConversation(
            chat_pb2.UpdateConversationRequest(conversation_id=conversation.id, title="mine"), metadata=bob.md
        ),
    ):
        refused = await fails(call)
        assert refused.code == grpc.StatusCode.PERMISSION_DENIED and refused.reason == "NOT_OWNER"
    owner_leaving = await fails(
        alice.stub.RemoveMember(
            chat_pb2.RemoveMemberRequest(conversation_id=conversation.id, user_id=alice.id), metadata=alice.md
        )
    )
    assert owner_leaving.code == grpc.StatusCode.FAILED_PRECONDITION
    await bob.stub.RemoveMember(
        chat_pb2.RemoveMemberRequest(conversation_id=conversation.id, user_id=bob.id), metadata=bob.md
    )
    await alice.stub.RemoveMember(
        chat_pb2.RemoveMemberRequest(conversation_id=conversation.id, user_id=carol.id), metadata=alice.md
    )
    for former in (bob, carol):
        gone = await fails(former.messages(conversation.id))
        assert gone.code == grpc.StatusCode.NOT_FOUND
    got = await alice.stub.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=conversation.id), metadata=alice.md
    )
    assert list(got.conversation.member_ids) == [alice.id]


async def test_member_limit(chat: Start) -> None:
    alice, bob, carol, dave = await chat(4, chat_max_members=2)
    conversation = await alice.create()
    for invitee in (bob, carol):  # invitations below the limit; the first to accept fills it
        await alice.stub.AddMember(
            chat_pb2.AddMemberRequest(conversation_id=conversation.id, user_id=invitee.id), metadata=alice.md
        )
    await bob.stub.AcceptInvitation(chat_pb2.AcceptInvitationRequest(conversation_id=conversation.id), metadata=bob.md)
    late = await fails(
        carol.stub.AcceptInvitation(
            chat_pb2.AcceptInvitationRequest(conversation_id=conversation.id), metadata=carol.md
        )
    )
    assert late.code == grpc.StatusCode.RESOURCE_EXHAUSTED and late.reason == "TOO_MANY_MEMBERS"
    still = await carol.stub.ListInvitations(chat_pb2.ListInvitationsRequest(), metadata=carol.md)
    assert len(still.invitations) == 1  # kept: it can be accepted once someone leaves
    full = await fails(
        alice.stub.AddMember(
            chat_pb2.AddMemberRequest(conversation_id=conversation.id, user_id=dave.id), metadata=alice.md
        )
    )
    assert full.code == grpc.StatusCode.RESOURCE_EXHAUSTED and full.reason == "TOO_MANY_MEMBERS"


def _calls(member: Member, conversation_id: str, message_id: str, file_id: str) -> list[tuple[str, Any]]:
    """Every chat RPC that names a conversation, as `member` would make it."""
    c, m = conversation_id, message_id
    requests: dict[str, Any] = {
        "GetConversation": chat_pb2.GetConversationRequest(conversation_id=c),
        "DeleteConversation": chat_pb2.DeleteConversationRequest(conversation_id=c),
        "UpdateConversation": chat_pb2.UpdateConversationRequest(conversation_id=c, title="x"),
        "AddMember": chat_pb2.AddMemberRequest(conversation_id=c, user_id=member.id),
        "RemoveMember": chat_pb2.RemoveMemberRequest(conversation_id=c, user_id=member.id),
        "SendMessage": chat_pb2.SendMessageRequest(conversation_id=c, text="hi"),
        "ListMessages": chat_pb2.ListMessagesRequest(conversation_id=c),
        "CancelGeneration": chat_pb2.CancelGenerationRequest(conversation_id=c, message_id=m),
        "AddReaction": chat_pb2.AddReactionRequest(conversation_id=c, message_id=m, emoji="👍"),
        "RemoveReaction": chat_pb2.RemoveReactionRequest(conversation_id=c, message_id=m, emoji="👍"),
        "SendTyping": chat_pb2.SendTypingRequest(conversation_id=c, typing=True),
        "StreamEvents": chat_pb2.StreamEventsRequest(conversation_id=c),
        "DownloadAttachment": chat_pb2.DownloadAttachmentRequest(conversation_id=c, message_id=m, file_id=file_id),
    }
    streaming = {"SendMessage", "StreamEvents", "DownloadAttachment"}
    calls = []
    for name, request in requests.items():
        call = getattr(member.stub, name)(request, metadata=member.md)
        calls.append((name, _drain(call) if name in streaming else call))
    return calls


async def _drain(call: Any) -> list[Any]:
    return [item async for item in call]


@pytest.mark.parametrize("target", ["someone elses", "missing"])
async def test_outsiders_get_not_found_on_every_rpc_exactly_like_a_missing_conversation(
    chat: Start, target: str
) -> None:
    alice, mallory = await chat(2)
    conversation = await alice.create(model="builtin/echo")
    sent = await alice.send(conversation.id, "private")
    conversation_id = conversation.id if target == "someone elses" else MISSING
    for name, call in _calls(mallory, conversation_id, sent.reply.id, MISSING):
        error = await fails(call)
        assert error.code == grpc.StatusCode.NOT_FOUND, name
        assert error.reason == "CONVERSATION_NOT_FOUND", name
        assert error.message == f"no conversation {conversation_id} of yours", name
    # Nothing changed for alice.
    assert len(await alice.messages(conversation.id)) == 2


async def test_a_message_of_another_conversation_is_not_found(chat: Start) -> None:
    alice, bob = await chat(2)
    mine = await alice.create(model="builtin/echo")
    theirs = await bob.create(model="builtin/echo")
    sent = await bob.send(theirs.id, "bob's")
    request = chat_pb2.AddReactionRequest(conversation_id=mine.id, message_id=sent.reply.id, emoji="👍")
    error = await fails(alice.stub.AddReaction(request, metadata=alice.md))
    assert error.code == grpc.StatusCode.NOT_FOUND and error.reason == "MESSAGE_NOT_FOUND"


async def test_reactions_one_per_kind_per_member(chat: Start) -> None:
    alice, bob = await chat(2)
    conversation = await alice.create(model="builtin/echo")
    await alice.invite(conversation.id, bob)
    sent = await alice.send(conversation.id, "react to me")

    async def react(member: Member, emoji: str, add: bool = True) -> list[tuple[str, int, bool]]:
        if add:
            request = chat_pb2.AddReactionRequest(
                conversation_id=conversation.id, message_id=sent.user_message.id, emoji=emoji
            )
            response: Any = await member.stub.AddReaction(request, metadata=member.md)
        else:
            remove = chat_pb2.RemoveReactionRequest(
                conversation_id=conversation.id, message_id=sent.user_message.id, emoji=emoji
            )
            response = await member.stub.RemoveReaction(remove, metadata=member.md)
        return [(r.emoji, r.count, r.reacted_by_me) for r in response.reactions]

    assert await react(alice, "👍") == [("👍", 1, True)]
    assert await react(alice, "👍") == [("👍", 1, True)]  # twice is once
    assert await react(bob, "👍") == [("👍", 2, True)]
    assert sorted(await react(bob, "❤️")) == sorted([("👍", 2, True), ("❤️", 1, True)])
    assert sorted(await react(alice, "❤️", add=False)) == sorted([("👍", 2, True), ("❤️", 1, False)])
    assert await react(bob, "❤️", add=False) == [("👍", 2, True)]
    history = await alice.messages(conversation.id)
    message = next(m for m in history if m.id == sent.user_message.id)
    assert [(r.emoji, r.count, r.reacted_by_me) for r in message.reactions] == [("👍", 2, True)]
    spaced = await fails(
        alice.stub.AddReaction(
            chat_pb2.AddReactionRequest(conversation_id=conversation.id, message_id=sent.user_message.id, emoji="a b"),
            metadata=alice.md,
        )
    )
    assert spaced.code == grpc.StatusCode.INVALID_ARGUMENT

"""Accounts and passwords: registration, normalisation, policy, no truncation, no enumeration."""

from __future__ import annotations

import os
import threading
from typing import Any

import grpc
import pytest
from devpynode.auth.v1 import auth_pb2

from pynode.app.server import MeshServer
from pynode.auth import passwords
from tests.client import PASSWORD, MeshClient, fails, new_email
from tests.conftest import auth_of


async def test_register_signs_in_and_normalises_email(client: MeshClient) -> None:
    email = new_email()
    response = await client.register("  " + email.upper() + " ")
    assert response.user.email == email
    assert response.user.role == auth_pb2.ROLE_USER and not response.user.disabled
    assert response.tokens.access_token and response.tokens.refresh_token
    assert response.tokens.access_token_expires_at.seconds > response.user.created_at.seconds
    me = await client.me()
    assert me.id == response.user.id and me.display_name == "Test User"
    login = await client.as_other_address().login(email.capitalize())
    assert login.user.id == response.user.id


async def test_register_taken_email_is_already_exists(client: MeshClient) -> None:
    email = new_email()
    await client.register(email)
    error = await fails(
        client.auth.Register(
            auth_pb2.RegisterRequest(email=email.upper(), password=PASSWORD, display_name="Again"),
            metadata=client.md(""),
        )
    )
    assert error.code == grpc.StatusCode.ALREADY_EXISTS and error.reason == "EMAIL_UNAVAILABLE"


@pytest.mark.parametrize("weak", ["password", "PASSWORD1", "iloveyou", "qwertyuiop", "12345678"])
async def test_common_passwords_are_refused(client: MeshClient, weak: str) -> None:
    error = await fails(
        client.auth.Register(
            auth_pb2.RegisterRequest(email=new_email(), password=weak, display_name="W"), metadata=client.md("")
        )
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.violations() == {"password": "WEAK_PASSWORD"}


def test_blocklist_has_at_least_ten_thousand_entries() -> None:
    assert len(passwords.common_passwords()) >= 10_000


async def test_long_unicode_passwords_are_never_truncated(client: MeshClient) -> None:
    # 100 four-byte characters: 400 UTF-8 bytes, far past bcrypt's 72.
    long_password = "🔑" * 99 + "a"
    email = new_email()
    await client.register(email, long_password)
    await client.as_other_address().login(email, long_password)
    # Same first 72 bytes (and more), different end: must not match.
    error = await fails(client.as_other_address().login(email, "🔑" * 99 + "b"))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED


async def test_password_equivalent_under_nfkc_matches(client: MeshClient) -> None:
    email = new_email()
    await client.register(
        email, "\uff46\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48 \uff50\uff41\uff53\uff53"
    )  # fullwidth
    await client.as_other_address().login(email, "fullwidth pass")


async def test_oversized_password_is_invalid_not_an_error(client: MeshClient) -> None:
    error = await fails(client.login(new_email(), "x" * 300))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.violations() == {"password": "TOO_LONG"}


async def test_unknown_email_and_wrong_password_look_the_same(client: MeshClient) -> None:
    email = new_email()
    await client.register(email)
    wrong = await fails(client.as_other_address().login(email, "not the password at all"))
    unknown = await fails(client.as_other_address().login(new_email(), "not the password at all"))
    assert (wrong.code, wrong.message, wrong.reason) == (unknown.code, unknown.message, unknown.reason)
    assert wrong.code == grpc.StatusCode.UNAUTHENTICATED


async def test_unknown_email_costs_one_bcrypt_check_like_a_wrong_password(
    client: MeshClient, mesh: MeshServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timing parity by construction: both paths run exactly one bcrypt check at the configured cost."""
    email = new_email()
    await client.register(email)
    hasher = auth_of(mesh).hasher
    checks: list[tuple[str, int]] = []
    real_run = hasher._run

    async def recording(function: Any, *args: Any) -> Any:
        if function is passwords.check_password:
            checks.append((function.__name__, int(args[1].split(b"$")[2])))
        return await real_run(function, *args)

    monkeypatch.setattr(hasher, "_run", recording)
    await fails(client.as_other_address().login(email, "not the password at all"))
    wrong = list(checks)
    checks.clear()
    await fails(client.as_other_address().login(new_email(), "not the password at all"))
    assert wrong == checks == [("check_password", hasher.cost)]


async def test_change_password_ends_other_sessions_and_keeps_this_one(client: MeshClient) -> None:
    email = new_email()
    await client.register(email)
    other = client.as_other_address()
    other_login = await other.login(email)
    new_password = "a brand new passphrase"
    wrong = await fails(
        client.auth.ChangePassword(
            auth_pb2.ChangePasswordRequest(current_password="nope nope nope", new_password=new_password),
            metadata=client.md(),
        )
    )
    assert wrong.code == grpc.StatusCode.INVALID_ARGUMENT and wrong.violations() == {
        "current_password": "WRONG_PASSWORD"
    }
    await client.auth.ChangePassword(
        auth_pb2.ChangePasswordRequest(current_password=PASSWORD, new_password=new_password), metadata=client.md()
    )
    await client.me()  # this session lives on
    ended = await fails(other.me())
    assert ended.code == grpc.StatusCode.UNAUTHENTICATED and ended.reason == "SESSION_REVOKED"
    refresh = await fails(
        other.auth.RefreshToken(
            auth_pb2.RefreshTokenRequest(refresh_token=other_login.tokens.refresh_token), metadata=other.md("")
        )
    )
    assert refresh.code == grpc.StatusCode.UNAUTHENTICATED
    await fails(client.as_other_address().login(email))
    await client.as_other_address().login(email, new_password)


async def test_email_that_lengthens_when_lower_cased_is_invalid(client: MeshClient) -> None:
    # "İ" (U+0130) lower-cases to two code points: 200 of them pass the 254 limit, then exceed it.
    email = "\u0130" * 200 + "@example.com"
    error = await fails(
        client.auth.Register(
            auth_pb2.RegisterRequest(email=email, password=PASSWORD, display_name="Long"), metadata=client.md("")
        )
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.violations() == {"email": "TOO_LONG"}


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_hashing_threads_yield_to_the_event_loop() -> None:
    """Pool threads run idle-priority, so a login storm never holds a core the event loop wants."""

    seen: list[tuple[int, int]] = []

    def hashing_thread() -> None:
        passwords.lower_priority(19)
        seen.append((os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))

    worker = threading.Thread(target=hashing_thread)
    worker.start()
    worker.join()
    assert seen == [(os.SCHED_IDLE, 19)]
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # only that thread, not the process

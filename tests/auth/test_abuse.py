"""Rate limits and a lockout that stops guessing without locking the owner out."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from devpynode.auth.v1 import auth_pb2
from google.rpc import error_details_pb2

from tests.client import MeshClient, RichError, fails, new_email, rich_error

WRONG = "definitely not it"


def _retry_seconds(error: RichError) -> float:
    delay = error.detail(error_details_pb2.RetryInfo).retry_delay
    return float(delay.seconds + delay.nanos / 1e9)


async def test_register_is_rate_limited_per_address(strict: Any) -> None:
    client: MeshClient = await strict(rate_limit_per_minute=3)
    for _ in range(3):
        await client.register()
    error = await fails(client.register())
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.reason == "RATE_LIMITED"
    quota = error.detail(error_details_pb2.QuotaFailure)
    assert quota.violations[0].subject == "register:address"
    assert 0 < _retry_seconds(error) <= 60
    await client.as_other_address().register()  # other addresses are not affected


async def test_register_is_rate_limited_per_account_across_addresses(strict: Any) -> None:
    client: MeshClient = await strict(rate_limit_per_minute=3)
    email = new_email()
    await client.as_other_address().register(email)
    for _ in range(2):
        assert (await fails(client.as_other_address().register(email))).code == grpc.StatusCode.ALREADY_EXISTS
    error = await fails(client.as_other_address().register(email))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.detail(error_details_pb2.QuotaFailure).violations[0].subject == "register:account"


async def test_login_is_rate_limited_per_account_across_addresses(strict: Any) -> None:
    client: MeshClient = await strict(rate_limit_per_minute=4, account_flood_failures=100, lockout_free_failures=100)
    email = new_email()
    await client.register(email)
    for _ in range(4):
        await client.as_other_address().login(email)
    error = await fails(client.as_other_address().login(email))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.detail(error_details_pb2.QuotaFailure).violations[0].subject == "login:account"


async def test_refresh_is_rate_limited(strict: Any) -> None:
    client: MeshClient = await strict(rate_limit_per_minute=3)
    tokens = (await client.register()).tokens
    for _ in range(3):
        tokens = (
            await client.auth.RefreshToken(
                auth_pb2.RefreshTokenRequest(refresh_token=tokens.refresh_token), metadata=client.md("")
            )
        ).tokens
    error = await fails(
        client.auth.RefreshToken(
            auth_pb2.RefreshTokenRequest(refresh_token=tokens.refresh_token), metadata=client.md("")
        )
    )
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and _retry_seconds(error) > 0


async def test_refresh_is_rate_limited_per_account_across_sessions_and_addresses(strict: Any) -> None:
    client: MeshClient = await strict(rate_limit_per_minute=3, lockout_free_failures=100)
    email = new_email()
    await client.register(email)
    devices = [(await client.as_other_address().login(email)).tokens.refresh_token for _ in range(2)]

    async def refresh(token: str) -> auth_pb2.TokenPair:
        other = client.as_other_address()
        response = await other.auth.RefreshToken(
            auth_pb2.RefreshTokenRequest(refresh_token=token), metadata=other.md("")
        )
        return response.tokens

    devices[0] = (await refresh(devices[0])).refresh_token
    devices[1] = (await refresh(devices[1])).refresh_token
    devices[0] = (await refresh(devices[0])).refresh_token
    error = await fails(refresh(devices[1]))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.detail(error_details_pb2.QuotaFailure).violations[0].subject == "refresh:account"


async def test_a_stranger_with_the_session_id_cannot_spend_the_owners_refresh_budget(strict: Any) -> None:
    client: MeshClient = await strict(rate_limit_per_minute=3)
    tokens = (await client.register()).tokens
    sid = tokens.refresh_token.partition(".")[0]  # also the `sid` claim every access token shows
    made_up = auth_pb2.RefreshTokenRequest(refresh_token=f"{sid}.not-a-secret-we-issued")
    for _ in range(4):  # more than the account's budget, each from an address of its own
        stranger = client.as_other_address()
        error = await fails(stranger.auth.RefreshToken(made_up, metadata=stranger.md("")))
        assert error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason == "INVALID_REFRESH_TOKEN"
    # The owner still refreshes: only secrets issued for the session are charged to its account.
    request = auth_pb2.RefreshTokenRequest(refresh_token=tokens.refresh_token)
    renewed = await client.auth.RefreshToken(request, metadata=client.md(""))
    assert renewed.tokens.refresh_token.startswith(sid + ".")
    # Failures are charged to the address that sends them.
    stranger = client.as_other_address()
    for _ in range(3):
        await fails(stranger.auth.RefreshToken(made_up, metadata=stranger.md("")))
    limited = await fails(stranger.auth.RefreshToken(made_up, metadata=stranger.md("")))
    assert limited.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert limited.detail(error_details_pb2.QuotaFailure).violations[0].subject == "refresh:address"


async def test_failures_lock_the_address_with_growing_delays(client: MeshClient) -> None:
    email = new_email()
    await client.register(email)
    attacker = client.as_other_address()
    for _ in range(5):
        assert (await fails(attacker.login(email, WRONG))).code == grpc.StatusCode.UNAUTHENTICATED
    locked = await fails(attacker.login(email))  # even the right password waits
    assert locked.code == grpc.StatusCode.RESOURCE_EXHAUSTED and locked.reason == "LOGIN_LOCKED"
    first_delay = _retry_seconds(locked)
    assert 0 < first_delay <= 1.0
    await asyncio.sleep(first_delay + 0.05)
    await fails(attacker.login(email, WRONG))
    second = await fails(attacker.login(email, WRONG))
    assert second.reason == "LOGIN_LOCKED" and _retry_seconds(second) > first_delay
    # The owner, from another address, is not locked out.
    await client.as_other_address().login(email)


async def test_lockout_does_not_reveal_whether_an_account_exists(client: MeshClient) -> None:
    attacker = client.as_other_address()
    ghost = new_email()
    for _ in range(5):
        await fails(attacker.login(ghost, WRONG))
    assert (await fails(attacker.login(ghost, WRONG))).reason == "LOGIN_LOCKED"


async def test_a_flood_slows_strangers_but_not_the_owners_known_address(client: MeshClient) -> None:
    email = new_email()
    await client.register(email)
    owner = client.as_other_address()
    await owner.login(email)  # a known good address from now on
    for _ in range(12):  # the test settings' account_flood_failures
        await fails(client.as_other_address().login(email, WRONG))
    await fails(client.as_other_address().login(email, WRONG))  # takes the one slot of this spacing period
    slowed = await fails(client.as_other_address().login(email))
    assert slowed.code == grpc.StatusCode.RESOURCE_EXHAUSTED and slowed.reason == "LOGIN_LOCKED"
    assert 0 < _retry_seconds(slowed) <= 2
    await owner.login(email)  # the owner gets in at once


async def test_change_password_cannot_be_used_to_guess_the_current_one(strict: Any) -> None:
    client: MeshClient = await strict(rate_limit_per_minute=3)
    await client.register()

    def attempt(guess: str) -> Any:
        request = auth_pb2.ChangePasswordRequest(current_password=guess, new_password="another long passphrase")
        return client.auth.ChangePassword(request, metadata=client.md())

    for _ in range(3):
        assert (await fails(attempt(WRONG))).code == grpc.StatusCode.INVALID_ARGUMENT
    error = await fails(attempt(WRONG))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.detail(error_details_pb2.QuotaFailure).violations[0].subject == "change-password:account"


async def test_a_storm_beyond_the_hashing_queue_is_shed_with_a_retry_delay(strict: Any) -> None:
    client: MeshClient = await strict(
        bcrypt_cost=10, bcrypt_workers=1, bcrypt_queue=1, rate_limit_per_minute=100, lockout_free_failures=100
    )
    email = new_email()
    await client.register(email)
    results = await asyncio.gather(*(client.as_other_address().login(email) for _ in range(6)), return_exceptions=True)
    shed = [rich_error(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert 0 < len(shed) <= 4 and sum(isinstance(r, auth_pb2.LoginResponse) for r in results) >= 2
    for error in shed:
        assert error.code == grpc.StatusCode.UNAVAILABLE and error.reason == "OVERLOADED"
        assert _retry_seconds(error) > 0
    await client.as_other_address().login(email)  # nothing was lost: the account works once the storm is over


async def test_failures_from_elsewhere_never_lock_the_owner_out_of_a_known_address(strict: Any) -> None:
    client: MeshClient = await strict(rate_limit_per_minute=30)
    email = new_email()
    await client.register(email)
    await client.login(email)  # home: an address that signed in before
    attackers = [client.as_other_address() for _ in range(8)]
    for attempt in range(32):
        error = await fails(attackers[attempt % 8].login(email, WRONG))
        assert error.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED)
    stranger = await fails(client.as_other_address().login(email))  # the account's limit still holds
    assert stranger.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    await client.login(email)  # the owner, at home, with the right password, gets in


async def test_wrong_current_passwords_meet_the_login_lockout(strict: Any) -> None:
    client: MeshClient = await strict(lockout_free_failures=3)
    email = new_email()
    await client.register(email)

    def attempt(guess: str) -> Any:
        request = auth_pb2.ChangePasswordRequest(current_password=guess, new_password="another long passphrase")
        return client.auth.ChangePassword(request, metadata=client.md())

    for _ in range(3):
        assert (await fails(attempt(WRONG))).code == grpc.StatusCode.INVALID_ARGUMENT
    locked = await fails(attempt(WRONG))
    assert locked.code == grpc.StatusCode.RESOURCE_EXHAUSTED and locked.reason == "LOGIN_LOCKED"
    # The same budget as Login: this address is now locked out of signing in to the account too.
    assert (await fails(client.login(email))).reason == "LOGIN_LOCKED"

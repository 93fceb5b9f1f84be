"""Hostile bytes and strings: malformed protobuf, NUL and invisible characters, confusable e-mails,
forged page tokens and request ids. Each is a clear INVALID_ARGUMENT, never INTERNAL or UNKNOWN."""

from __future__ import annotations

import base64
import json
import logging
import re
from typing import Any

import grpc
import pytest
from devpynode.auth.v1 import auth_pb2
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from pynode.app.server import MeshServer
from pynode.core.db import Database
from pynode.core.text import email_problem
from tests.backends import Backend
from tests.client import PASSWORD, MeshClient, fails, new_email, rich_error
from tests.conftest import auth_of


def _raw_login(client: MeshClient) -> Any:
    return client.channel.unary_unary(
        "/devpynode.auth.v1.AuthService/Login", request_serializer=None, response_deserializer=None
    )


def _login_counts(mesh: MeshServer) -> dict[str, int]:
    for method in mesh.metrics._methods:  # the counts behind /metrics
        if method.labels.grpc_method == "Login":
            return dict(method.handled)
    raise AssertionError("Login has no metrics")


@pytest.mark.parametrize(
    "payload",
    [b"\x0a\x02\xff\xfe", b"\x08\xff", b"\x1b" * 200 + b"\x1c" * 200],
    ids=["invalid-utf8", "truncated-varint", "deep-nesting"],
)
async def test_malformed_protobuf_is_invalid_argument_logged_and_counted(
    client: MeshClient, mesh: MeshServer, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    before = _login_counts(mesh).get("INVALID_ARGUMENT", 0)
    with caplog.at_level(logging.WARNING):
        try:
            await _raw_login(client)(payload, metadata=client.md("", **{"x-request-id": "bad-bytes-1"}))
        except grpc.aio.AioRpcError as raised:
            error = rich_error(raised)
            trailing = dict(raised.trailing_metadata() or ())
        else:
            raise AssertionError("a malformed request was accepted")
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.reason == "MALFORMED_REQUEST"
    assert trailing.get("x-request-id") == "bad-bytes-1"
    assert _login_counts(mesh).get("INVALID_ARGUMENT", 0) == before + 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no traceback per bad request"


@pytest.mark.parametrize("field", ["email", "display_name"])
@pytest.mark.parametrize("bad", ["\x00", "\x07", "\u202e", "\u200b"])
async def test_control_and_format_characters_are_refused(client: MeshClient, field: str, bad: str) -> None:
    values = {"email": new_email(), "password": PASSWORD, "display_name": "Someone"}
    values[field] = values[field][:3] + bad + values[field][3:]
    error = await fails(client.auth.Register(auth_pb2.RegisterRequest(**values), metadata=client.md("")))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.violations()


async def test_nul_anywhere_is_refused_before_the_database(client: MeshClient) -> None:
    for request in (
        auth_pb2.LoginRequest(email="a\x00b@example.com", password=PASSWORD),
        auth_pb2.LoginRequest(email=new_email(), password="pass\x00word!"),
    ):
        error = await fails(client.auth.Login(request, metadata=client.md("")))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "CONTROL_CHARACTER" in error.violations().values()


@pytest.mark.parametrize("name", ["\u3164", " \u200b ", "\u2800\u2800", "\u115f"])
async def test_names_made_only_of_invisible_characters_are_refused(client: MeshClient, name: str) -> None:
    request = auth_pb2.RegisterRequest(email=new_email(), password=PASSWORD, display_name=name)
    error = await fails(client.auth.Register(request, metadata=client.md("")))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "display_name" in error.violations()


@pytest.mark.parametrize(
    ("email", "problem"),
    [
        ("p\u0430ypal@example.com", "CONFUSABLE"),  # Cyrillic a among Latin letters
        ("paypal@ex\u0430mple.com", "CONFUSABLE"),
        ("pay\u200bpal@example.com", "CONFUSABLE"),  # zero-width space
        ("\u202emoc.elpmaxe@evil.com", "CONFUSABLE"),  # right-to-left override
        ("\uff50aypal@example.com", "CONFUSABLE"),  # fullwidth p
        ("not-an-email", "BAD_FORMAT"),
        ("jos\u00e9@example.com", None),  # one script with its accents
        ("\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a", None),  # Han throughout
        ("\u30e6\u30fc\u30b6\u30fc\u540d@example.jp", None),  # Katakana with Han, written together
        ("\u0438\u0432\u0430\u043d@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444", None),  # Cyrillic throughout
    ],
)
def test_email_confusables(email: str, problem: str | None) -> None:
    assert email_problem(email) == problem


async def test_confusable_emails_are_refused_at_registration(client: MeshClient) -> None:
    request = auth_pb2.RegisterRequest(email="p\u0430ypal@example.com", password=PASSWORD, display_name="Pay")
    error = await fails(client.auth.Register(request, metadata=client.md("")))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.violations() == {"email": "CONFUSABLE"}


def _token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


async def test_forged_page_tokens_are_invalid_argument(client: MeshClient, mesh: MeshServer) -> None:
    email = new_email()
    await auth_of(mesh).service.create_admin(email, PASSWORD, "Admin")
    await client.login(email)
    forged = [
        {"t": 5, "i": 7},
        {"t": "2026-01-01T00:00:00+00:00", "i": 123},
        {"t": "2026-01-01T00:00:00", "i": "4c1f6c38-7f0c-4d9b-9d49-000000000000"},
        {"t": ["x"], "i": {"y": 1}},
        {"o": True},
        {"b": "12", "f": "|"},
        [1, 2],
        "just a string",
    ]
    for position in forged:
        calls = [
            client.admin.ListUsers(auth_pb2.ListUsersRequest(page_token=_token(position)), metadata=client.md()),
            client.auth.ListSessions(auth_pb2.ListSessionsRequest(page_token=_token(position)), metadata=client.md()),
            client.admin.ListAuditEvents(
                auth_pb2.ListAuditEventsRequest(page_token=_token(position)), metadata=client.md()
            ),
        ]
        for call in calls:
            error = await fails(call)
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT, (position, error)
            assert error.violations() == {"page_token": "BAD_PAGE_TOKEN"}


@pytest.mark.parametrize("supplied", ["x" * 129, "has space", "<script>", "a;b=c", ""])
async def test_client_request_ids_are_bounded(client: MeshClient, supplied: str) -> None:
    metadata = [("x-forwarded-for", client.address), ("x-request-id", supplied)]
    try:
        await client.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=metadata)
    except grpc.aio.AioRpcError as raised:
        answered = dict(raised.trailing_metadata() or ()).get("x-request-id", "")
    else:
        raise AssertionError("an anonymous GetCurrentUser succeeded")
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", answered) and answered != supplied  # our own id instead


async def test_sql_errors_never_carry_bound_parameters(backend: Backend, tmp_path: Any) -> None:
    url = backend.database_url or f"sqlite+aiosqlite:///{tmp_path}/params.db"
    db = Database(url)
    secret = "$2b$12$do-not-log-this-hash"
    try:
        async with db.session() as session:
            with pytest.raises(DBAPIError) as raised:
                await session.execute(text("SELECT CAST(:v AS INTEGER) / 0 FROM no_such_table"), {"v": secret})
        assert secret not in str(raised.value)
    finally:
        await db.close()


async def test_a_unary_call_ended_without_its_message_is_answered_at_once(client: MeshClient) -> None:
    """Issue 27 #13: grpc.aio held such a call until the connection's age (2,000 of them held 29 MiB)."""

    async def nothing() -> Any:
        return
        yield

    async def two() -> Any:
        yield auth_pb2.GetJwksRequest().SerializeToString()
        yield auth_pb2.GetJwksRequest().SerializeToString()

    as_stream = client.channel.stream_unary(
        "/devpynode.auth.v1.AuthService/GetJwks", request_serializer=None, response_deserializer=None
    )
    empty = await fails(as_stream(nothing(), metadata=client.md(""), timeout=30))
    assert empty.code == grpc.StatusCode.INVALID_ARGUMENT and empty.reason == "MISSING_REQUEST_MESSAGE"
    # What follows the first message is ignored, as grpc's own unary handlers ignore it (the edge reads once:
    # a second read per call cost a cheap call a tenth of its throughput); the call is answered at once.
    answered = auth_pb2.GetJwksResponse.FromString(await as_stream(two(), metadata=client.md(""), timeout=30))
    assert answered.keys
    generate = client.channel.stream_stream(
        "/devpynode.ai.v1.AIRouterService/Generate", request_serializer=None, response_deserializer=None
    )
    token = (await client.register()).tokens.access_token
    cut = await fails(_drain(generate(nothing(), metadata=client.md(token), timeout=30)))
    assert cut.code == grpc.StatusCode.INVALID_ARGUMENT and cut.reason == "MISSING_REQUEST_MESSAGE"


async def _drain(call: Any) -> None:
    async for _ in call:
        pass


async def test_the_well_known_dev_secret_buys_no_service_token_from_another_host(
    client: MeshClient, mesh: MeshServer
) -> None:
    """Issue 27 #14: in dev mode the default secret (public: it is in the source) works from loopback only."""
    secret = mesh.platform.settings.mesh.service_secret.get_secret_value()
    request = auth_pb2.IssueServiceTokenRequest(service_name="chat", service_secret=secret)
    remote = await fails(client.auth.IssueServiceToken(request, metadata=[("x-forwarded-for", "203.0.113.77")]))
    assert remote.code == grpc.StatusCode.PERMISSION_DENIED and remote.reason == "DEV_SECRET_NOT_LOCAL"
    local = await client.auth.IssueServiceToken(request, metadata=[("x-forwarded-for", "127.0.0.1")])
    assert local.access_token

"""`devpynode keys create | ls | revoke`: personal API keys for scripts and OpenAI clients.

`create` prints the secret once (it cannot be read again); `--json` prints the key and its secret as one
JSON object for scripts. `ls` and `revoke` take `--user` (an e-mail or an id) for an administrator acting on
another account's keys.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import grpc
import typer
from devpynode.auth.v1 import api_keys_pb2, api_keys_pb2_grpc
from google.protobuf import json_format

from pynode.app.cli.account import _find, print_table
from pynode.app.cli.calls import bearer, channel
from pynode.app.cli.common import fail, local_time, server_address
from pynode.app.cli.options import Server

keys = typer.Typer(help="Personal API keys: create, list, revoke.", no_args_is_help=True)
TIMEOUT_SECONDS = 15.0
_SCOPES = {
    "full": api_keys_pb2.API_KEY_SCOPE_FULL,
    "ai": api_keys_pb2.API_KEY_SCOPE_AI,
    "read-only": api_keys_pb2.API_KEY_SCOPE_READ_ONLY,
}
_HEADERS = ("id", "name", "scope", "prefix", "created", "expires", "last used", "revoked")

User = Annotated[str | None, typer.Option("--user", help="Another account's keys (admins): its e-mail address or id")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (one object) instead of a table")]


def _scope_name(scope: api_keys_pb2.ApiKeyScope.ValueType) -> str:
    return {v: k for k, v in _SCOPES.items()}.get(scope, "full")


def _when(key: api_keys_pb2.ApiKey, field: str) -> str:
    return local_time(getattr(key, field)) if key.HasField(field) else ""  # type: ignore[arg-type]


def _row(key: api_keys_pb2.ApiKey) -> tuple[str, ...]:
    return (
        key.id,
        key.name,
        _scope_name(key.scope),
        key.prefix,
        _when(key, "create_time"),
        _when(key, "expire_time") or "never",
        _when(key, "last_use_time"),
        _when(key, "revoke_time"),
    )


def _json(message: object) -> str:
    return json_format.MessageToJson(message, indent=None)  # type: ignore[arg-type]


def _owner(opened: grpc.Channel, address: str, user: str | None) -> str | None:
    if user is None:
        return None
    return user if "@" not in user else _find(opened, address, user)


@keys.command("create")
def create(
    name: Annotated[str, typer.Argument(help="What the key is for (laptop, CI, editor)")],
    scope: Annotated[str, typer.Option(help="full, ai (the AI router only) or read-only")] = "full",
    expires_in_days: Annotated[
        int | None, typer.Option("--expires-in-days", help="Stop working after this many days (1-366); never if unset")
    ] = None,
    as_json: Json = False,
    server: Server = None,
) -> None:
    """Create a key for your account and print its secret (shown this once)."""
    if scope not in _SCOPES:
        fail(f"--scope: {scope!r} is not a scope; use full, ai or read-only", 2)
    if expires_in_days is not None and not 1 <= expires_in_days <= 366:
        fail(f"--expires-in-days: {expires_in_days} is not 1 to 366 (leave it out for a key that never expires)", 2)
    address = server_address(server)
    request = api_keys_pb2.CreateApiKeyRequest(name=name, scope=_SCOPES[scope])
    if expires_in_days is not None:
        request.expire_time.FromDatetime(datetime.now(UTC) + timedelta(days=expires_in_days))
    with channel(address) as opened:
        created = api_keys_pb2_grpc.ApiKeyServiceStub(opened).CreateApiKey(
            request, metadata=bearer(address), timeout=TIMEOUT_SECONDS
        )
    if as_json:
        print(_json(created))
        return
    print(created.secret)
    typer.echo(
        f"created key {created.api_key.id} ({name}, scope {scope}); the secret above is shown only now: keep it safe",
        err=True,
    )


@keys.command("ls")
def ls(
    active_only: Annotated[bool, typer.Option("--active", help="Leave out revoked and expired keys")] = False,
    user: User = None,
    as_json: Json = False,
    server: Server = None,
) -> None:
    """List your keys (or another account's, for admins), newest first; never their secrets."""
    address = server_address(server)
    found: list[api_keys_pb2.ApiKey] = []
    with channel(address) as opened:
        stub = api_keys_pb2_grpc.ApiKeyServiceStub(opened)
        owner = _owner(opened, address, user)
        page = ""
        while True:
            response: api_keys_pb2.ListApiKeysResponse | api_keys_pb2.ListUserApiKeysResponse
            if owner is None:
                response = stub.ListApiKeys(
                    api_keys_pb2.ListApiKeysRequest(page_size=100, page_token=page, active_only=active_only),
                    metadata=bearer(address),
                    timeout=TIMEOUT_SECONDS,
                )
            else:
                response = stub.ListUserApiKeys(
                    api_keys_pb2.ListUserApiKeysRequest(
                        user_id=owner, page_size=100, page_token=page, active_only=active_only
                    ),
                    metadata=bearer(address),
                    timeout=TIMEOUT_SECONDS,
                )
            found.extend(response.api_keys)
            page = response.next_page_token
            if not page:
                break
    if as_json:
        print(json.dumps({"apiKeys": [json.loads(_json(k)) for k in found]}))
        return
    print_table(_HEADERS, [_row(k) for k in found])


@keys.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `devpynode keys ls`)")],
    user: User = None,
    server: Server = None,
) -> None:
    """Revoke a key: it stops working at once, everywhere."""
    address = server_address(server)
    with channel(address) as opened:
        stub = api_keys_pb2_grpc.ApiKeyServiceStub(opened)
        owner = _owner(opened, address, user)
        key_id = _key_named(stub, address, owner, key_id)
        if owner is None:
            stub.RevokeApiKey(
                api_keys_pb2.RevokeApiKeyRequest(api_key_id=key_id), metadata=bearer(address), timeout=TIMEOUT_SECONDS
            )
        else:
            stub.RevokeUserApiKey(
                api_keys_pb2.RevokeUserApiKeyRequest(user_id=owner, api_key_id=key_id),
                metadata=bearer(address),
                timeout=TIMEOUT_SECONDS,
            )
    print(f"revoked {key_id}")


def _key_named(stub: Any, address: str, owner: str | None, given: str) -> str:
    """The key id `given` names: an id, the prefix `keys ls` shows (`dpn_1a2b3c4d`), or the whole secret."""
    if not given.startswith("dpn_"):
        return given
    hex_id = given.removeprefix("dpn_").split("_", 1)[0].lower()
    if len(hex_id) == 32:  # a whole secret carries its key's id
        try:
            return str(uuid.UUID(hex_id))
        except ValueError:
            fail(f"{given[:12]}... is not a key's id, prefix or secret", 2)
    if owner is None:
        listed = stub.ListApiKeys(
            api_keys_pb2.ListApiKeysRequest(page_size=100), metadata=bearer(address), timeout=TIMEOUT_SECONDS
        )
    else:
        listed = stub.ListUserApiKeys(
            api_keys_pb2.ListUserApiKeysRequest(user_id=owner, page_size=100),
            metadata=bearer(address),
            timeout=TIMEOUT_SECONDS,
        )
    matches = [k.id for k in listed.api_keys if k.prefix == given]
    if len(matches) != 1:
        which = "no key has" if not matches else "more than one key has"
        fail(f"{given}: {which} that prefix (see `devpynode keys ls`)")
    return str(matches[0])

"""What each API key scope may call (the rule in pynode.core.api_keys), RPC by RPC, and the secret's shape."""

from __future__ import annotations

import uuid

import pytest

from pynode.core import api_keys

A = "/devpynode.auth.v1.AuthService/"
K = "/devpynode.auth.v1.ApiKeyService/"
AI = "/devpynode.ai.v1.AIRouterService/"
F = "/devpynode.files.v1.FileService/"
C = "/devpynode.chat.v1.ChatService/"
U = "/devpynode.auth.v1.UserAdminService/"


@pytest.mark.parametrize(
    ("method", "full", "ai", "read_only"),
    [
        (A + "GetCurrentUser", True, True, True),
        (A + "ChangePassword", False, False, False),
        (A + "ListSessions", False, False, False),
        (A + "Logout", False, False, False),
        (A + "StartSsoLogin", False, False, False),  # an AuthService RPC added later is closed to keys too
        (K + "CreateApiKey", False, False, False),
        (K + "ListApiKeys", True, False, True),
        (K + "RevokeApiKey", True, False, False),
        (AI + "Generate", True, True, False),
        (AI + "ListModels", True, True, True),
        (AI + "GetUsage", True, True, True),
        (F + "ListFiles", True, False, True),
        (F + "DownloadFile", True, False, True),
        (F + "DeleteFile", True, False, False),
        (C + "StreamEvents", True, False, True),
        (C + "SendMessage", True, False, False),
        (U + "ListUsers", True, False, True),  # the role check (capped at user) refuses it before the scope
    ],
)
def test_each_scope_allows_what_it_says(method: str, full: bool, ai: bool, read_only: bool) -> None:
    for scope, allowed in ((api_keys.FULL, full), (api_keys.AI, ai), (api_keys.READ_ONLY, read_only)):
        assert (api_keys.scope_refusal(scope, method) is None) is allowed, (scope, method)


def test_only_full_keys_keep_the_owners_role() -> None:
    assert api_keys.capped_role(api_keys.FULL, "admin") == "admin"
    assert api_keys.capped_role(api_keys.AI, "admin") == "user"
    assert api_keys.capped_role(api_keys.READ_ONLY, "admin") == "user"


def test_the_secret_names_its_key_and_nothing_else_parses() -> None:
    key_id = uuid.uuid4()
    secret = api_keys.mint(key_id)
    assert api_keys.key_id_of(secret) == key_id and api_keys.looks_like_key(secret)
    assert api_keys.mint(key_id) != secret  # 256 fresh random bits each time
    for bad in ("dpn_", "dpn_x", secret[:-1], secret + "A", secret.replace("_", "-", 2), "eyJhbGciOi.x.y"):
        assert api_keys.key_id_of(bad) is None, bad
    other = "B" if secret.endswith("A") else "A"  # one secret in 64 ends in "A" already
    assert api_keys.digest(secret) != api_keys.digest(secret[:-1] + other)

"""Configured OpenID providers: one entry per provider, from DEVPYNODE_AUTH_OIDC_PROVIDERS or a YAML file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from pynode.auth.domain import ROLES
from pynode.core.settings import SettingsError

_ID = re.compile(r"[a-z][a-z0-9_-]{0,63}")


class OidcProviderConfig(BaseModel):
    """One provider. The client registered at the IdP for the web app is `client_id` (confidential when
    `client_secret` is set); `cli_client_id` is a public *native* client for the CLI's loopback redirect and the
    device flow (the IdP must accept `http://127.0.0.1:<any port>/callback` for it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Short id used by clients (`corp`).")
    issuer: str = Field(description="The issuer URL, compared exactly with discovery and tokens.")
    display_name: str = Field("", description='Shown as "Sign in with <display_name>".')
    client_id: str = Field(description="The web app's client at the IdP.")
    client_secret: SecretStr = Field(SecretStr(""), description="Its secret; empty for a public client.")
    cli_client_id: str = Field("", description="A native public client for the CLI (loopback and device flow).")
    scopes: tuple[str, ...] = Field(("openid", "email", "profile"), description="Scopes asked for.")
    allowed_email_domains: tuple[str, ...] = Field((), description="Only these e-mail domains may sign in.")
    allow_signup: bool = Field(True, description="Create an account for an unknown identity.")
    groups_claim: str = Field("", description="The claim listing the person's groups (`groups`).")
    group_roles: dict[str, str] = Field({}, description="Group name to platform role (`user` or `admin`).")
    auto_link_verified_email: bool = Field(
        False,
        description="Link an unknown identity to the local non-admin account with its e-mail when the provider "
        "says email_verified is true. Off: the person signs in with the password and links from the account page.",
    )
    id_token_algorithms: tuple[str, ...] = Field(
        ("RS256", "PS256", "ES256", "EdDSA"), description="Signature algorithms accepted on ID tokens."
    )

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError("must be lower-case letters, digits, '-' or '_' (at most 64), starting with a letter")
        return value

    @field_validator("issuer")
    @classmethod
    def _issuer_shape(cls, value: str) -> str:
        if not value.startswith(("https://", "http://127.0.0.1", "http://localhost")) or "?" in value or "#" in value:
            raise ValueError("must be an https URL without query or fragment (http only on loopback)")
        return value

    @field_validator("id_token_algorithms")
    @classmethod
    def _algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [a for a in value if a == "none" or a.startswith("HS")]
        if bad or not value:
            raise ValueError("must list asymmetric algorithms only (never none or HS*)")
        return value

    @model_validator(mode="after")
    def _roles_and_scopes(self) -> OidcProviderConfig:
        if "openid" not in self.scopes:
            raise ValueError("scopes must include openid")
        unknown = sorted({r for r in self.group_roles.values() if r not in ROLES})
        if unknown:
            raise ValueError(f"group_roles: unknown roles {unknown} (known: {', '.join(ROLES)})")
        if self.group_roles and not self.groups_claim:
            raise ValueError("group_roles needs groups_claim")
        return self

    @property
    def label(self) -> str:
        return self.display_name or self.id

    @property
    def confidential(self) -> bool:
        return bool(self.client_secret.get_secret_value())


def parse_providers(inline: str, file: str) -> tuple[OidcProviderConfig, ...]:
    """The providers from the JSON setting and the YAML file (a list, or `{providers: [...]}`); one clear
    SettingsError line for the first mistake."""
    entries: list[Any] = []
    if inline.strip():
        try:
            entries += _as_list(json.loads(inline), "DEVPYNODE_AUTH_OIDC_PROVIDERS")
        except json.JSONDecodeError as exc:
            raise SettingsError(f"DEVPYNODE_AUTH_OIDC_PROVIDERS: not JSON ({exc.msg} at {exc.pos})") from None
    if file.strip():
        try:
            entries += _as_list(yaml.safe_load(Path(file).read_text()), f"DEVPYNODE_AUTH_OIDC_FILE ({file})")
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"DEVPYNODE_AUTH_OIDC_FILE: cannot read {file}: {exc}") from None
    providers: list[OidcProviderConfig] = []
    for number, entry in enumerate(entries, 1):
        name = entry.get("id", f"#{number}") if isinstance(entry, dict) else f"#{number}"
        try:
            providers.append(OidcProviderConfig.model_validate(entry))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "entry"
            raise SettingsError(f"OIDC provider {name}: {where}: {first['msg']}") from None
    ids = [p.id for p in providers]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SettingsError(f"OIDC providers: ids used twice: {', '.join(duplicates)}")
    return tuple(providers)


def _as_list(value: Any, where: str) -> list[Any]:
    if isinstance(value, dict) and "providers" in value:
        value = value["providers"]
    if not isinstance(value, list):
        raise SettingsError(f"{where}: expected a list of providers")
    return value

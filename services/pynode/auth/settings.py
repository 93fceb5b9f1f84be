"""The auth service's settings: signing keys, token lifetimes, password hashing, abuse limits."""

from __future__ import annotations

from pydantic import Field, SecretStr

from pynode.core.settings import Section


class AuthSettings(Section):
    """Everything auth reads; each field is `DEVPYNODE_<NAME>`."""

    auth_private_keys: SecretStr = Field(
        SecretStr(""),
        description="Ed25519 private keys (PEM, concatenated). The first signs; all verify. "
        "Empty in dev mode: a key is generated in the data dir.",
    )
    auth_public_keys: str = Field("", description="Extra verify-only Ed25519 public keys (PEM), for rotation.")
    access_token_seconds: int = Field(900, ge=30, le=86400, description="Access token lifetime.")
    refresh_token_days: float = Field(30, gt=0, le=365, description="Absolute lifetime of a login session.")
    refresh_grace_seconds: float = Field(
        30, ge=0, le=300, description="Window in which a just-rotated refresh token may be replayed."
    )
    bcrypt_cost: int = Field(12, ge=4, le=16, description="bcrypt work factor.")
    bcrypt_workers: int = Field(0, ge=0, description="Threads hashing passwords; 0 means one per core.")
    bcrypt_queue: int = Field(
        0,
        ge=0,
        description="Hashes that may wait for a thread; beyond that Register/Login/ChangePassword answer UNAVAILABLE "
        "with RetryInfo instead of queueing without end. 0 means 16 per thread (about 4 s of waiting at cost 12).",
    )
    bcrypt_nice: int = Field(
        19,
        ge=0,
        le=19,
        description="CPU niceness of the hashing threads; above 0 they also run SCHED_IDLE (Linux), so hashing "
        "never delays cheap RPCs. 0 leaves them at normal priority.",
    )
    rate_limit_per_minute: int = Field(
        30, ge=1, description="Register/Login/RefreshToken calls per minute per client address and per account."
    )
    lockout_free_failures: int = Field(5, ge=1, description="Failed logins per address and account before delays.")
    lockout_max_seconds: int = Field(900, ge=1, description="Longest lockout delay.")
    account_flood_failures: int = Field(
        50, ge=1, description="Failed logins on one account (all addresses, 15 min) that slow unknown addresses."
    )
    audit_retention_days: float = Field(
        365, ge=0, description="Days the audit trail keeps security events; 0 keeps them for ever."
    )
    auth_oidc_providers: SecretStr = Field(
        SecretStr(""),
        description="Single sign-on providers as a JSON list of objects (id, issuer, client_id, client_secret, "
        "cli_client_id, scopes, display_name, allowed_email_domains, allow_signup, groups_claim, group_roles, "
        "auto_link_verified_email); see the README. Secret: it holds client secrets.",
    )
    auth_oidc_file: str = Field("", description="A YAML file with the same list (`providers:`), added to the above.")
    auth_oidc_web_redirect_url: str = Field(
        "http://127.0.0.1:8080/oidc/callback",
        description="The web app's /oidc/callback page as the browser reaches it (the same host and port people open: "
        "the tab keeps its sign-in secret per origin, so localhost and 127.0.0.1 differ): registered at each provider "
        "as the web client's redirect URI.",
    )

"""Ed25519 signing keys for access tokens: loading, development generation, kids and JWKs.

Several keys may be loaded: the first private key signs, every key verifies,
so a new key can be introduced and an old one retired without logging anyone out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pynode.auth.settings import AuthSettings
from pynode.core.settings import SettingsError

_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----", re.S)
DEV_KEY_FILE = "auth-ed25519.pem"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def public_x(key: Ed25519PublicKey) -> str:
    """The JWK `x` member: the raw public key, base64url."""
    return _b64url(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def thumbprint(key: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint, used as the `kid`."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": public_x(key)}, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class VerificationKey:
    """A public key and its kid."""

    kid: str
    key: Ed25519PublicKey

    def jwk(self) -> dict[str, str]:
        return {"kty": "OKP", "crv": "Ed25519", "x": public_x(self.key), "kid": self.kid, "alg": "EdDSA", "use": "sig"}


class SigningKeyring:
    """The auth service's keys: one signs, all verify."""

    def __init__(self, signer: Ed25519PrivateKey, extra_public: list[Ed25519PublicKey] | None = None) -> None:
        self.signer = signer
        self.signer_kid = thumbprint(signer.public_key())
        keys = [signer.public_key(), *(extra_public or [])]
        self.verification = {thumbprint(k): VerificationKey(thumbprint(k), k) for k in keys}

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        found = self.verification.get(kid)
        return found.key if found else None

    def jwks(self) -> list[dict[str, str]]:
        return [k.jwk() for k in self.verification.values()]


def _load_private(pem: str, setting: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"{setting}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SettingsError(f"{setting}: keys must be Ed25519")
    return key


def _load_public(pem: str, setting: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"{setting}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SettingsError(f"{setting}: keys must be Ed25519")
    return key


def generate_pem() -> str:
    """A new Ed25519 private key in PKCS#8 PEM (for operators: `devpynode signing-keys generate`)."""
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )


def load_keyring(settings: AuthSettings, *, dev_mode: bool, data_dir: Path) -> SigningKeyring:
    """The configured keys; in dev mode without any, a key generated once in the data dir."""
    private_pems = _PEM_BLOCK.findall(settings.auth_private_keys.get_secret_value())
    if not private_pems:
        if not dev_mode:
            raise SettingsError("DEVPYNODE_AUTH_PRIVATE_KEYS: required when dev mode is off")
        private_pems = [_dev_key(data_dir)]
    private = [_load_private(p, "DEVPYNODE_AUTH_PRIVATE_KEYS") for p in private_pems]
    public = [k.public_key() for k in private[1:]]
    public += [_load_public(p, "DEVPYNODE_AUTH_PUBLIC_KEYS") for p in _PEM_BLOCK.findall(settings.auth_public_keys)]
    return SigningKeyring(private[0], public)


def _dev_key(data_dir: Path) -> str:
    path = data_dir / "keys" / DEV_KEY_FILE
    if path.exists():
        return path.read_text()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = generate_pem()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(pem)
    return pem

"""The signed-in user's tokens, kept between commands in the user's config directory (mode 0600)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path


def config_dir() -> Path:
    """$DEVPYNODE_CONFIG_DIR, else $XDG_CONFIG_HOME/devpynode, else ~/.config/devpynode."""
    explicit = os.environ.get("DEVPYNODE_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "devpynode"


@dataclass
class Credentials:
    """One server's tokens for one account."""

    server: str
    email: str
    access_token: str
    access_expires_at: float
    refresh_token: str
    refresh_expires_at: float

    def access_fresh(self, margin: float = 30.0) -> bool:
        return self.access_expires_at - margin > time.time()


def _path() -> Path:
    return config_dir() / "credentials.json"


def _load_all() -> dict[str, dict[str, object]]:
    try:
        data = json.loads(_path().read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load(server: str) -> Credentials | None:
    """The tokens kept for `server`, if any."""
    raw = _load_all().get(server)
    if not isinstance(raw, dict):
        return None
    try:
        return Credentials(**raw)  # type: ignore[arg-type]
    except TypeError:
        return None


def save(credentials: Credentials) -> Path:
    """Keep the tokens (written to a temporary file with mode 0600, then renamed into place)."""
    everything = _load_all()
    everything[credentials.server] = asdict(credentials)
    return _write(everything)


def forget(server: str) -> bool:
    """Drop the tokens kept for `server`; whether there were any."""
    everything = _load_all()
    if everything.pop(server, None) is None:
        return False
    _write(everything)
    return True


def _write(everything: dict[str, dict[str, object]]) -> Path:
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(everything, handle, indent=1)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return path

"""The fifth service's settings section: `DEVPYNODE_FIFTH_NOTE_LIMIT` and `DEVPYNODE_FIFTH_SECRET`."""

from __future__ import annotations

from pydantic import Field, SecretStr

from pynode.core.settings import Section


class FifthSettings(Section):
    """Each field is `DEVPYNODE_<NAME>`."""

    fifth_note_limit: int = Field(200, ge=1, le=200, description="Longest note kept, in characters.")
    fifth_secret: SecretStr = Field(SecretStr(""), description="Required outside dev mode (its safety hook).")

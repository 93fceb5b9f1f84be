"""The fifth service's settings section: one field, `DEVPYNODE_FIFTH_NOTE_LIMIT`."""

from __future__ import annotations

from pydantic import Field

from pynode.core.settings import Section


class FifthSettings(Section):
    """Each field is `DEVPYNODE_<NAME>`."""

    fifth_note_limit: int = Field(200, ge=1, le=200, description="Longest note kept, in characters.")

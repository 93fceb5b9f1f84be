"""The chat service's settings."""

from __future__ import annotations

from pynode.core.settings import Section


class ChatSettings(Section):
    """Chat has no settings of its own yet; its peers (AI router, files) are found through MeshSettings."""

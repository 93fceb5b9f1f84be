"""The chat's line editor (prompt_toolkit): messages of any length and many lines, history, a clear send key.

Plain `input()` reads through the terminal's canonical mode, which cuts a line at 4,095 bytes without a word,
shows arrow keys as escape codes and keeps no history. Here Enter sends, Alt+Enter (or Esc then Enter, or
Ctrl-J) starts a new line, a paste of any length arrives whole (bracketed paste: its newlines stay in the
message instead of sending it), and Up/Down walk the history kept in the config directory (mode 0600). The
keys are named in the toolbar under the prompt.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.application.current import get_app
from prompt_toolkit.filters import Condition
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from pynode.app.cli.credentials import config_dir

TOOLBAR = (
    " Enter sends · Alt+Enter (Esc Enter) new line · ↑↓ history · Ctrl-C clears"
    " · /attach PATH · /model M · /quit or Ctrl-D"
)
HISTORY_FILE = "chat-history"


def history_path() -> Path:
    """Where typed messages are remembered: the config directory, beside the tokens."""
    return config_dir() / HISTORY_FILE


def _private(path: Path) -> Path:
    """The history file, created readable by its owner alone (messages may be private)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    return path


@Condition
def has_text() -> bool:
    return bool(get_app().current_buffer.text)


def _keys() -> KeyBindings:
    keys = KeyBindings()

    @keys.add("enter")
    def _send(event: KeyPressEvent) -> None:
        event.current_buffer.validate_and_handle()

    @keys.add("escape", "enter")
    @keys.add("c-j")
    def _new_line(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    @keys.add("c-c", filter=has_text)
    def _clear(event: KeyPressEvent) -> None:
        # Ctrl-C clears a draft, as in a shell; on an empty prompt it leaves the chat (KeyboardInterrupt).
        event.current_buffer.reset()

    return keys


class MessageEditor:
    """Reads one message at a time from a terminal; `read` raises EOFError (Ctrl-D) or KeyboardInterrupt."""

    def __init__(self, history: Path | None = None, **terminal: Any) -> None:
        # `terminal`: prompt_toolkit's `input` and `output`, given by tests (a pipe, a dummy screen).
        self._session: PromptSession[str] = PromptSession(
            history=FileHistory(str(_private(history or history_path()))),
            multiline=True,
            key_bindings=_keys(),
            bottom_toolbar=TOOLBAR,
            prompt_continuation="  ",
            enable_history_search=False,
            **terminal,
        )

    def read(self) -> str:
        return self._session.prompt("> ")

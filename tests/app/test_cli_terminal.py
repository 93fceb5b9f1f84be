"""The CLI on a terminal, driven in this process: the chat's line editor (prompt_toolkit's pipe input), the
progress line of a small file, and an error the chat cannot go on after, said once (issue 26 items 2, 7, 8)."""

from __future__ import annotations

import io
import re
import stat
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from pynode.app.cli import chat, files
from pynode.app.cli.common import CliError
from pynode.app.cli.editor import TOOLBAR, MessageEditor

PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"


def test_enter_sends_alt_enter_breaks_a_line_and_a_long_paste_arrives_whole(tmp_path: Path) -> None:
    history = tmp_path / "config" / "chat-history"
    with create_pipe_input() as pipe:
        editor = MessageEditor(history, input=pipe, output=DummyOutput())
        pipe.send_text("hello there\r")
        assert editor.read() == "hello there"
        pipe.send_text("and another\r")
        assert editor.read() == "and another"
        pipe.send_text("\x1b[A\x1b[A\r")  # Up, twice: the first message again
        assert editor.read() == "hello there"
        pipe.send_text("first line\x1b\rsecond line\r")  # Esc then Enter, as Alt+Enter arrives
        assert editor.read() == "first line\nsecond line"
        pasted = "word " * 2000 + "\n\nand a second paragraph\n"  # 10 kB, beyond the terminal's 4,095-byte line
        pipe.send_text(PASTE_START + pasted + PASTE_END + "\r")  # its newlines stay in the message
        assert editor.read() == pasted
    assert stat.S_IMODE(history.stat().st_mode) == 0o600  # messages may be private
    assert "Enter sends" in TOOLBAR and "Alt+Enter" in TOOLBAR


def test_ctrl_c_clears_a_draft_and_on_an_empty_prompt_leaves(tmp_path: Path) -> None:
    with create_pipe_input() as pipe:
        editor = MessageEditor(tmp_path / "history", input=pipe, output=DummyOutput())
        pipe.send_text("a draft I regret\x03kept\r")  # Ctrl-C with text: the draft goes, the chat stays
        assert editor.read() == "kept"
        pipe.send_text("\x03")
        with pytest.raises(KeyboardInterrupt):
            editor.read()


def test_ctrl_d_ends_the_conversation(tmp_path: Path) -> None:
    with create_pipe_input() as pipe:
        editor = MessageEditor(tmp_path / "history", input=pipe, output=DummyOutput())
        pipe.send_text("\x04")
        with pytest.raises(EOFError):
            editor.read()


def test_a_small_files_progress_line_shows_no_unknowns(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(files, "_err", Console(file=screen, force_terminal=True, width=100))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with files._progress() as progress:
        task = progress.add_task("notes.md", total=120)
        progress.update(task, completed=120)
        progress.refresh()
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # the words, without the terminal's codes
    assert "notes.md" in drawn and "?" not in drawn and "0:00:" not in drawn and "-:--:--" not in drawn, drawn


class _Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "connection refused"

    def trailing_metadata(self) -> tuple[Any, ...]:
        return ()


class _DownSession:
    address = "127.0.0.1:50051"

    def send(self, text: str) -> None:
        raise _Unavailable()


def test_a_server_gone_mid_chat_is_said_once(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(chat, "_err", Console(file=screen))
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    with pytest.raises(CliError) as raised:
        chat._talk(_DownSession())  # type: ignore[arg-type]
    assert "cannot reach the server" in str(raised.value)
    assert screen.getvalue() == ""  # main prints the one line; nothing before it


def test_tables_show_other_peoples_names_as_text_never_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    # A display name "[/bold]Mallory" crashed an admin's `users list` (MarkupError); "[link=...]" drew a hyperlink.
    from pynode.app.cli import account

    screen = io.StringIO()
    monkeypatch.setattr(account, "console", Console(file=screen, force_terminal=True, width=160))
    account.print_table(("id", "name"), [("1", "[/bold]Mallory"), ("2", "[link=http://evil.example]click[/link]")])
    drawn = screen.getvalue()
    assert "[/bold]Mallory" in drawn and "[link=http://evil.example]click[/link]" in drawn
    assert "\x1b]8;" not in drawn  # no terminal hyperlink

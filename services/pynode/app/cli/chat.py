"""`devpynode chat`: a conversation in the terminal, answers streaming token by token.

On a terminal, messages are written in a line editor (`editor`): Enter sends, Alt+Enter starts a new line,
pastes arrive whole, Up/Down recall earlier messages. `/attach PATH` uploads a file and attaches it to the
next message, `/model M` switches the conversation's model, `/tools FILE` offers the model the tools of a JSON
file (as `ask --tools`), `/result CALL_ID TEXT` posts a tool call's result (the model then goes on; calls show
as `-> name(arguments)  [call ID]`, results as `<- ID: text`), `/quit` (or Ctrl-D) leaves. Ctrl-C while an
answer streams cancels it (the partial answer is kept); a second Ctrl-C leaves. Opening a conversation
whose answer is still being written attaches to it. When standard input is not a terminal, each line read
is a message, so the command can be scripted.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from devpynode.chat.v1 import chat_pb2, chat_pb2_grpc
from devpynode.files.v1 import files_pb2_grpc
from rich.console import Console

from pynode.app.cli.account import print_table
from pynode.app.cli.calls import bearer, channel
from pynode.app.cli.common import CliError, fail, local_time, rpc_error, server_address
from pynode.app.cli.files import _progress, _upload_one
from pynode.app.cli.options import Server
from pynode.app.cli.toolcalls import call_line, load_tools, result_line
from pynode.core.text import for_terminal

TIMEOUT_SECONDS = 10.0
ANSWER_TIMEOUT_SECONDS = 3600.0
HISTORY_SHOWN = 20
_out = Console(highlight=False)
_err = Console(stderr=True, highlight=False)
_ENDED = {
    chat_pb2.MESSAGE_STATE_CANCELLED: "cancelled",
    chat_pb2.MESSAGE_STATE_FAILED: "failed",
}

chat = typer.Typer(
    help="Conversations with members and models: `devpynode chat` opens one, `chat ls` lists them.",
    invoke_without_command=True,
)


@chat.command("ls")
def ls(server: Server = None) -> None:
    """List your conversations, most recently active first."""
    address = server_address(server)
    rows = []
    with channel(address) as opened:
        stub = chat_pb2_grpc.ChatServiceStub(opened)
        token = ""
        while True:
            page = stub.ListConversations(
                chat_pb2.ListConversationsRequest(page_size=100, page_token=token),
                metadata=bearer(address),
                timeout=TIMEOUT_SECONDS,
            )
            for c in page.conversations:
                rows.append(
                    (
                        c.id,
                        _line(c.title) or "(untitled)",
                        _line(c.model),
                        str(len(c.member_ids)),
                        local_time(c.updated_at),
                    )
                )
            token = page.next_page_token
            if not token:
                break
    print_table(("id", "title", "model", "members", "active"), rows)


class Session:
    """One open conversation: sending, streaming, cancelling."""

    def __init__(self, opened_channel: grpc.Channel, address: str, conversation: chat_pb2.Conversation) -> None:
        self.stub = chat_pb2_grpc.ChatServiceStub(opened_channel)
        self.files = files_pb2_grpc.FileServiceStub(opened_channel)
        self.address = address
        self.conversation = conversation
        self.attachments: list[str] = []
        self.tools: list[chat_pb2.Tool] = []  # offered to the model with every message from /tools on

    def _md(self) -> Any:
        return bearer(self.address)

    def show_history(self) -> str | None:
        """Print the last messages; returns the id of an answer still being written, if any."""
        page = self.stub.ListMessages(
            chat_pb2.ListMessagesRequest(conversation_id=self.conversation.id, page_size=HISTORY_SHOWN),
            metadata=self._md(),
            timeout=TIMEOUT_SECONDS,
        )
        running = None
        for message in reversed(page.messages):
            if message.state == chat_pb2.MESSAGE_STATE_STREAMING:
                running = message.id
                continue
            self._print(message)
        return running

    def _print(self, message: chat_pb2.Message) -> None:
        if message.role == chat_pb2.MESSAGE_ROLE_TOOL:
            _out.print(for_terminal(result_line(message.tool_call_id, message.text)), markup=False)
        elif message.role == chat_pb2.MESSAGE_ROLE_USER:
            files = f" [{', '.join(_line(a.filename) for a in message.attachments)}]" if message.attachments else ""
            _out.print(f"> {for_terminal(message.text)}{files}", markup=False)
        else:
            _out.print(for_terminal(message.text), markup=False)
            self._ended(message)

    def _ended(self, message: chat_pb2.Message) -> None:
        for call in message.tool_calls:
            _out.print(for_terminal(call_line(call.name, call.arguments_json, call.id)), markup=False)
        if message.state in _ENDED:
            why = f": {_line(message.error)}" if message.error else ""
            _err.print(f"({_ENDED[message.state]}{why})", markup=False)

    def attach_running(self, message_id: str) -> None:
        """Follow an answer that is still being written (this or another client started it)."""
        call = self.stub.StreamEvents(
            chat_pb2.StreamEventsRequest(conversation_id=self.conversation.id),
            metadata=self._md(),
            timeout=ANSWER_TIMEOUT_SECONDS,
        )
        try:
            for event in call:
                kind = event.WhichOneof("event")
                if kind == "message" and event.message.id == message_id:
                    if event.message.state == chat_pb2.MESSAGE_STATE_STREAMING:
                        _write(event.message.text)
                    else:
                        _write("\n")
                        self._ended(event.message)
                        return
                elif kind == "delta" and event.delta.message_id == message_id:
                    _write(event.delta.text)
        except KeyboardInterrupt:
            self._cancel(message_id)
            _write("\n")
        finally:
            call.cancel()

    def load_tools(self, path: Path) -> None:
        self.tools = [chat_pb2.Tool(name=n, description=d, parameters_json=p) for n, d, p in load_tools(path)]
        _err.print(f"(the model may call {', '.join(t.name for t in self.tools)})", markup=False)

    def send(self, text: str, results: list[chat_pb2.ToolResult] | None = None) -> None:
        request = chat_pb2.SendMessageRequest(
            conversation_id=self.conversation.id,
            text=text,
            attachment_file_ids=self.attachments,
            client_request_id=uuid.uuid4().hex,
            tools=self.tools,
            tool_results=results or [],
        )
        self.attachments = []
        call = self.stub.SendMessage(request, metadata=self._md(), timeout=ANSWER_TIMEOUT_SECONDS)
        reply_id = ""
        printed = 0
        try:
            for response in call:
                kind = response.WhichOneof("event")
                if kind == "delta":
                    reply_id = response.delta.message_id
                    printed += len(response.delta.text)
                    _write(response.delta.text)
                elif kind == "assistant_message":
                    _write("\n")
                    self._ended(response.assistant_message)
                elif kind == "user_message" and response.user_message.role == chat_pb2.MESSAGE_ROLE_TOOL:
                    self._print(response.user_message)  # the result as posted, before the model goes on
                elif kind == "user_message" and response.user_message.attachments:
                    names = ", ".join(_line(a.filename) for a in response.user_message.attachments)
                    _err.print(f"(attached {names})", markup=False)
        except KeyboardInterrupt:
            # An interrupted read cannot be resumed: this stream ends here, and the answer is stopped on the
            # server, which returns it as it stood (a second Ctrl-C while waiting leaves).
            call.cancel()
            if not reply_id:
                raise
            stopped = self._cancel(reply_id)
            _write(stopped.text[printed:] + "\n")
            self._ended(stopped)

    def _cancel(self, message_id: str) -> chat_pb2.Message:
        stopped: chat_pb2.Message = self.stub.CancelGeneration(
            chat_pb2.CancelGenerationRequest(conversation_id=self.conversation.id, message_id=message_id),
            metadata=self._md(),
            timeout=TIMEOUT_SECONDS,
        ).message
        return stopped

    def attach_file(self, path: Path) -> None:
        if not path.is_file():
            _err.print(f"(no file {path})", markup=False)
            return
        with _progress() as progress:
            uploaded = _upload_one(self.files, self.address, path, progress)
        self.attachments.append(uploaded.id)
        _err.print(f"({_line(uploaded.filename)} will be attached to your next message)", markup=False)

    def switch_model(self, model: str) -> None:
        self.conversation = self.stub.UpdateConversation(
            chat_pb2.UpdateConversationRequest(conversation_id=self.conversation.id, model=model),
            metadata=self._md(),
            timeout=TIMEOUT_SECONDS,
        ).conversation
        _err.print(f"(answers now come from {_line(self.conversation.model)})", markup=False)


def _line(text: str) -> str:
    """A one-line field from the server (a title, a file name), safe to print: see `_write`."""
    return for_terminal(text, newlines=False)


def _write(text: str) -> None:
    # Everything printed here was written by someone else (a member, a model): escape sequences in it are
    # shown, never obeyed (ESC c would reset the reader's terminal, a bidi override reorder what it shows).
    text = for_terminal(text)
    sys.stdout.write(text)
    sys.stdout.flush()


def _pick(stub: Any, address: str, model: str, title: str) -> chat_pb2.Conversation:
    """On a terminal: choose one of the recent conversations, or a new one."""
    if sys.stdin.isatty():
        recent = stub.ListConversations(
            chat_pb2.ListConversationsRequest(page_size=10), metadata=bearer(address), timeout=TIMEOUT_SECONDS
        ).conversations
        for i, conversation in enumerate(recent, 1):
            _err.print(
                f"  {i}. {_line(conversation.title) or '(untitled)'}  [{_line(conversation.model)}]", markup=False
            )
        if recent:
            choice = input("open which (number), or Enter for a new conversation: ").strip()
            if choice.isdigit() and 1 <= int(choice) <= len(recent):
                chosen: chat_pb2.Conversation = recent[int(choice) - 1]
                return chosen
    created: chat_pb2.Conversation = stub.CreateConversation(
        chat_pb2.CreateConversationRequest(title=title, model=model), metadata=bearer(address), timeout=TIMEOUT_SECONDS
    ).conversation
    return created


@chat.callback()
def open_conversation(
    ctx: typer.Context,
    conversation_id: Annotated[str | None, typer.Option("--conversation", "-c", help="Open this conversation")] = None,
    new: Annotated[bool, typer.Option("--new", help="Start a new conversation")] = False,
    model: Annotated[str, typer.Option("--model", "-m", help="Model of a new conversation")] = "",
    title: Annotated[str, typer.Option(help="Title of a new conversation (default: from its first message)")] = "",
    server: Server = None,
) -> None:
    """Open a conversation (pick one, or start one) and talk: answers stream as they are written."""
    if ctx.invoked_subcommand is not None:
        return
    address = server_address(server)
    with channel(address) as opened:
        stub = chat_pb2_grpc.ChatServiceStub(opened)
        if conversation_id:
            conversation = stub.GetConversation(
                chat_pb2.GetConversationRequest(conversation_id=conversation_id),
                metadata=bearer(address),
                timeout=TIMEOUT_SECONDS,
            ).conversation
        elif new or not sys.stdin.isatty():
            conversation = stub.CreateConversation(
                chat_pb2.CreateConversationRequest(title=title, model=model),
                metadata=bearer(address),
                timeout=TIMEOUT_SECONDS,
            ).conversation
        else:
            conversation = _pick(stub, address, model, title)
        session = Session(opened, address, conversation)
        _err.print(
            f"(conversation {conversation.id}, model {_line(conversation.model)}; /attach PATH, /model M, /quit)",
            markup=False,
        )
        running = session.show_history()
        if running:
            session.attach_running(running)
        _talk(session)


def _talk(session: Session) -> None:
    read = _terminal_reader() if sys.stdin.isatty() else sys.stdin.readline
    while True:
        try:
            line = read()
        except (EOFError, KeyboardInterrupt):
            _write("\n")
            return
        if not line:
            return  # end of piped input (an empty message on a terminal is "", skipped below)
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return
        try:
            if text.startswith("/attach "):
                session.attach_file(Path(text.removeprefix("/attach ").strip()).expanduser())
            elif text.startswith("/model "):
                session.switch_model(text.removeprefix("/model ").strip())
            elif text.startswith("/tools "):
                session.load_tools(Path(text.removeprefix("/tools ").strip()).expanduser())
            elif text.startswith("/result ") and len(text.split(maxsplit=2)) == 3:
                _, call_id, content = text.split(maxsplit=2)
                session.send("", [chat_pb2.ToolResult(tool_call_id=call_id, content=content)])
            elif text.startswith("/"):
                _err.print("(commands: /attach PATH, /model M, /tools FILE, /result CALL_ID TEXT, /quit)", markup=False)
            else:
                session.send(text)
        except KeyboardInterrupt:
            _write("\n")
            return
        except CliError as error:  # a /tools file that cannot be used: said, and the conversation goes on
            _err.print(f"({error})", markup=False)
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED):
                fail(str(rpc_error(error, session.address)))  # the conversation cannot go on: said once, on exit
            # One line, and the conversation goes on (a refused attachment, an unknown model, a rate limit).
            _err.print(f"({rpc_error(error, session.address)})", markup=False)


def _terminal_reader() -> Callable[[], str]:
    """The line editor's `read`, where an empty message is not the end of input."""
    from pynode.app.cli.editor import MessageEditor

    editor = MessageEditor()

    def read() -> str:
        return editor.read() or " "

    return read

"""`devpynode models`, `devpynode ask` and `devpynode embed`: the AI router from a terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import grpc
import typer
from devpynode.ai.v1 import ai_pb2, ai_pb2_grpc
from rich.console import Console

from pynode.app.cli.account import print_table
from pynode.app.cli.calls import bearer, channel
from pynode.app.cli.common import CliError, fail, open_channel, rpc_error, server_address
from pynode.app.cli.options import Server
from pynode.app.cli.toolcalls import call_line, load_tools

TIMEOUT_SECONDS = 10.0
ASK_TIMEOUT_SECONDS = 600.0
_status = Console(stderr=True)
_FINISH = {
    ai_pb2.FINISH_REASON_STOP: "stop",
    ai_pb2.FINISH_REASON_LENGTH: "length (max tokens)",
    ai_pb2.FINISH_REASON_CANCELLED: "cancelled",
    ai_pb2.FINISH_REASON_ERROR: "error",
    ai_pb2.FINISH_REASON_TIME_LIMIT: "time limit",
    ai_pb2.FINISH_REASON_TOOL_CALLS: "tool calls",
}
_CHOICES = {
    "auto": ai_pb2.TOOL_CHOICE_MODE_AUTO,
    "none": ai_pb2.TOOL_CHOICE_MODE_NONE,
    "required": ai_pb2.TOOL_CHOICE_MODE_REQUIRED,
}


def models(server: Server = None) -> None:
    """List the models and aliases the router knows, and whether they answer now."""
    address = server_address(server)
    rows = []
    with channel(address) as opened:
        stub = ai_pb2_grpc.AIRouterServiceStub(opened)
        page = ""
        while True:
            response = stub.ListModels(
                ai_pb2.ListModelsRequest(page_size=100, page_token=page),
                metadata=bearer(address),
                timeout=TIMEOUT_SECONDS,
            )
            for model in response.models:
                kind = "development" if model.development else ""
                rows.append((model.id, model.provider, "yes" if model.available else "no", kind, model.description))
            page = response.next_page_token
            if not page:
                break
    print_table(("id", "provider", "available", "kind", "description"), rows)


def ask(
    prompt: Annotated[str, typer.Argument(help="What to ask")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model id (provider/name) or alias")] = "default",
    max_tokens: Annotated[int, typer.Option(help="Most tokens to generate (0: the router's default)")] = 0,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature, 0 to 2")] = None,
    tools: Annotated[
        Path | None,
        typer.Option(help="JSON file with tools the model may call (OpenAI's tools list, or [{name, parameters}])"),
    ] = None,
    tool_choice: Annotated[
        str, typer.Option(help="auto, none, required, or the name of the tool the model must call")
    ] = "auto",
    server: Server = None,
) -> None:
    """Ask a model; the answer streams as it comes, Ctrl-C stops it, the usage is the last line. Tool calls
    are printed as `-> name(arguments)  [call ID]` (nothing runs them)."""
    address = server_address(server)
    if not prompt.strip():
        fail("PROMPT: empty; say what to ask, e.g. devpynode ask 'what is gRPC?'", 2)
    options = ai_pb2.GenerateOptions(max_tokens=max_tokens)
    if temperature is not None:
        options.temperature = temperature
    request = ai_pb2.GenerateRequest(
        model=model, messages=[ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content=prompt)], options=options
    )
    if tools is not None:
        for name, description, parameters in load_tools(tools):
            request.tools.add(name=name, description=description, parameters_json=parameters)
        mode = _CHOICES.get(tool_choice, ai_pb2.TOOL_CHOICE_MODE_NAMED)
        request.tool_choice.CopyFrom(ai_pb2.ToolChoice(mode=mode, name="" if tool_choice in _CHOICES else tool_choice))
    elif tool_choice != "auto":
        raise CliError("--tool-choice needs --tools FILE", 2)
    calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]
    metadata = bearer(address)
    with open_channel(address) as opened:
        call = ai_pb2_grpc.AIRouterServiceStub(opened).Generate(request, metadata=metadata, timeout=ASK_TIMEOUT_SECONDS)
        last = None
        written = False  # whether the answer has begun: an error then goes on a line of its own
        spinner = _status.status("waiting for the first token...", spinner="dots") if sys.stderr.isatty() else None
        if spinner is not None:
            spinner.start()
        try:
            for piece in call:
                if spinner is not None:
                    spinner.stop()
                    spinner = None
                if piece.text:
                    written = True
                    sys.stdout.write(piece.text)
                    sys.stdout.flush()
                for delta in piece.tool_calls:
                    entry = calls.setdefault(delta.index, ["", "", ""])
                    entry[0], entry[1] = delta.id or entry[0], delta.name or entry[1]
                    entry[2] += delta.arguments_json
                if piece.finish_reason:
                    last = piece
        except KeyboardInterrupt:
            call.cancel()  # the router closes the upstream request and records what was produced
            print("\n(cancelled)", file=sys.stderr)
            raise typer.Exit(130) from None
        except grpc.RpcError as error:
            if written:
                print()
            raise rpc_error(error, address) from None
        finally:
            if spinner is not None:
                spinner.stop()
    print()
    for call_id, name, arguments in (calls[i] for i in sorted(calls)):
        print(call_line(name, arguments, call_id))
    if last is not None:
        cached = ", cached" if last.cached else ""
        print(
            f"[{last.model}: {last.usage.prompt_tokens} prompt + {last.usage.completion_tokens} completion tokens, "
            f"{_FINISH.get(last.finish_reason, 'unknown')}{cached}]",
            file=sys.stderr,
        )


def embed(
    texts: Annotated[list[str], typer.Argument(help="The texts to embed")],
    model: Annotated[str, typer.Option("--model", "-m", help="Embedding model id (provider/name) or alias")] = (
        "builtin/echo"
    ),
    server: Server = None,
) -> None:
    """Print one JSON vector per text (a line each, in order); the model and tokens read go to stderr."""
    address = server_address(server)
    with open_channel(address) as opened:
        try:
            response = ai_pb2_grpc.AIRouterServiceStub(opened).Embed(
                ai_pb2.EmbedRequest(model=model, inputs=texts), metadata=bearer(address), timeout=ASK_TIMEOUT_SECONDS
            )
        except grpc.RpcError as error:
            raise rpc_error(error, address) from None
    for embedding in response.embeddings:
        print(json.dumps([round(v, 6) for v in embedding.values]))
    dimensions = len(response.embeddings[0].values) if response.embeddings else 0
    count, tokens = len(response.embeddings), response.usage.prompt_tokens
    print(f"[{response.model}: {count} vectors of {dimensions}, {tokens} tokens]", file=sys.stderr)

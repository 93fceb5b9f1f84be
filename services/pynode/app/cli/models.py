"""`devpynode models` and `devpynode ask`: the AI router from a terminal."""

from __future__ import annotations

import sys
from typing import Annotated

import grpc
import typer
from devpynode.ai.v1 import ai_pb2, ai_pb2_grpc
from rich.console import Console

from pynode.app.cli.account import print_table
from pynode.app.cli.calls import bearer, channel
from pynode.app.cli.common import fail, open_channel, rpc_error, server_address
from pynode.app.cli.options import Server

TIMEOUT_SECONDS = 10.0
ASK_TIMEOUT_SECONDS = 600.0
_status = Console(stderr=True)
_FINISH = {
    ai_pb2.FINISH_REASON_STOP: "stop",
    ai_pb2.FINISH_REASON_LENGTH: "length (max tokens)",
    ai_pb2.FINISH_REASON_CANCELLED: "cancelled",
    ai_pb2.FINISH_REASON_ERROR: "error",
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
    server: Server = None,
) -> None:
    """Ask a model; the answer streams as it comes, Ctrl-C stops it, the usage is the last line."""
    address = server_address(server)
    if not prompt.strip():
        fail("PROMPT: empty; say what to ask, e.g. devpynode ask 'what is gRPC?'", 2)
    options = ai_pb2.GenerateOptions(max_tokens=max_tokens)
    if temperature is not None:
        options.temperature = temperature
    request = ai_pb2.GenerateRequest(
        model=model, messages=[ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content=prompt)], options=options
    )
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
    if last is not None:
        cached = ", cached" if last.cached else ""
        print(
            f"[{last.model}: {last.usage.prompt_tokens} prompt + {last.usage.completion_tokens} completion tokens, "
            f"{_FINISH.get(last.finish_reason, 'unknown')}{cached}]",
            file=sys.stderr,
        )

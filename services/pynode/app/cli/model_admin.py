"""`devpynode models` as a group: the router's models bare, and the administrators' commands (`ls`, `show`,
`pull`, `rm`, `load`, `unload`) over ModelAdminService.

A NAME is `provider/model` (`ollama/llama3.2`), a resource name (`providers/ollama/models/llama3.2`), or an
Ollama model name alone (`llama3.2`, `hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M`): a first part with
a dot is a registry host, and names without a provider are Ollama's (`--provider` picks another).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import grpc
import typer
from devpynode.ai.v1 import models_pb2, models_pb2_grpc

from pynode.app.cli.account import print_table
from pynode.app.cli.calls import bearer
from pynode.app.cli.calls import channel as open_call_channel
from pynode.app.cli.common import open_channel, rpc_error, server_address
from pynode.app.cli.options import Server

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

TIMEOUT_SECONDS = 30.0
LOAD_TIMEOUT_SECONDS = 300.0
PULL_TIMEOUT_SECONDS = 24 * 3600.0  # a pull is as long as the download; Ctrl-C is how one stops it

Name = Annotated[str, typer.Argument(help="provider/model, or an Ollama model name (llama3.2:1b)")]
Provider = Annotated[str, typer.Option("--provider", help="The provider of a NAME given without one")]

models = typer.Typer(
    help="The models: bare, those you may use; the subcommands manage the providers' models (admins).",
    invoke_without_command=True,
)

_CAPABILITIES = {
    models_pb2.PROVIDER_MODEL_CAPABILITY_COMPLETION: "completion",
    models_pb2.PROVIDER_MODEL_CAPABILITY_TOOLS: "tools",
    models_pb2.PROVIDER_MODEL_CAPABILITY_VISION: "vision",
    models_pb2.PROVIDER_MODEL_CAPABILITY_EMBEDDING: "embedding",
    models_pb2.PROVIDER_MODEL_CAPABILITY_THINKING: "thinking",
    models_pb2.PROVIDER_MODEL_CAPABILITY_INSERT: "insert",
}


def model_name(name: str, provider: str = "ollama") -> str:
    """The name as the service takes it: `provider/model` or a resource name."""
    if name.startswith("providers/"):
        return name
    first, slash, _ = name.partition("/")
    if slash and "." not in first:
        return name
    return f"{provider}/{name}"


def size(count: int) -> str:
    """Bytes for people: 2.0 GB, 512 MB (decimal units, as Ollama prints them)."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"


@models.callback()
def _list(ctx: typer.Context, server: Server = None) -> None:
    """The models and aliases the router knows, and whether they answer now (`models ls`: what providers hold)."""
    if ctx.invoked_subcommand is None:
        from pynode.app.cli.models import models as router_models

        router_models(server)


@models.command("ls")
def ls(
    provider: Annotated[str, typer.Option("--provider", help="One provider only")] = "",
    server: Server = None,
) -> None:
    """What each provider holds: size, family, quantisation, context, capabilities, loaded (admins)."""
    address = server_address(server)
    rows: list[tuple[str, ...]] = []
    unreachable: set[str] = set()
    page = ""
    with open_call_channel(address) as channel:
        stub = models_pb2_grpc.ModelAdminServiceStub(channel)
        while True:
            response = stub.ListProviderModels(
                models_pb2.ListProviderModelsRequest(
                    parent=f"providers/{provider}" if provider else "", page_size=100, page_token=page
                ),
                metadata=bearer(address),
                timeout=TIMEOUT_SECONDS,
            )
            unreachable.update(response.unreachable)
            for m in response.provider_models:
                rows.append(
                    (
                        m.model_id,
                        size(m.size_bytes) if m.size_bytes else "",
                        m.family,
                        m.parameter_size,
                        m.quantization,
                        str(m.context_length or ""),
                        ",".join(_CAPABILITIES.get(c, "?") for c in m.capabilities),
                        "yes" if m.loaded else "no",
                    )
                )
            page = response.next_page_token
            if not page:
                break
    print_table(("id", "size", "family", "parameters", "quantization", "context", "capabilities", "loaded"), rows)
    for name in sorted(unreachable):
        print(f"devpynode: {name.removeprefix('providers/')} did not answer", file=sys.stderr)


@models.command("show")
def show(name: Name, provider: Provider = "ollama", server: Server = None) -> None:
    """One model in detail: family, quantisation, context, capabilities, parameters, license (admins)."""
    address = server_address(server)
    with open_call_channel(address) as channel:
        m = (
            models_pb2_grpc.ModelAdminServiceStub(channel)
            .GetProviderModel(
                models_pb2.GetProviderModelRequest(name=model_name(name, provider)),
                metadata=bearer(address),
                timeout=TIMEOUT_SECONDS,
            )
            .provider_model
        )
    facts = [
        ("id", m.model_id),
        ("provider", f"{m.provider} ({m.provider_kind})"),
        ("size", size(m.size_bytes) if m.size_bytes else ""),
        ("family", m.family),
        ("parameters", m.parameter_size),
        ("quantization", m.quantization),
        ("format", m.format),
        ("context length", str(m.context_length or "")),
        ("capabilities", ", ".join(_CAPABILITIES.get(c, "?") for c in m.capabilities)),
        ("loaded", f"yes ({size(m.loaded_size_bytes)})" if m.loaded else "no"),
        ("digest", m.digest),
        ("description", m.description),
    ]
    for label, value in facts:
        if value:
            print(f"{label + ':':<16}{value}")
    if m.parameters:
        print("defaults:")
        for line in m.parameters.splitlines():
            print(f"  {line}")
    if m.license:
        print(f"license:        {m.license.splitlines()[0][:100]}")


@models.command("pull")
def pull(name: Name, provider: Provider = "ollama", server: Server = None) -> None:
    """Download a model into its provider with a progress bar; Ctrl-C stops the download (admins)."""
    address = server_address(server)
    request = models_pb2.PullProviderModelRequest(name=model_name(name, provider))
    metadata = bearer(address)
    with open_channel(address) as channel:
        call = models_pb2_grpc.ModelAdminServiceStub(channel).PullProviderModel(
            request, metadata=metadata, timeout=PULL_TIMEOUT_SECONDS
        )
        progress = PullDisplay(sys.stderr.isatty())
        try:
            for step in call:
                progress.show(step)
                if step.done:
                    progress.stop()
                    print(f"pulled {step.provider_model.model_id} ({size(step.provider_model.size_bytes)})")
        except KeyboardInterrupt:
            call.cancel()  # the server closes its download from the provider
            progress.stop()
            print("(cancelled: the download stopped)", file=sys.stderr)
            raise typer.Exit(130) from None
        except grpc.RpcError as error:
            progress.stop()
            raise rpc_error(error, address) from None
        finally:
            progress.stop()


@models.command("rm")
def rm(name: Name, provider: Provider = "ollama", server: Server = None) -> None:
    """Delete a model from its provider's storage (admins)."""
    address = server_address(server)
    full = model_name(name, provider)
    with open_call_channel(address) as channel:
        models_pb2_grpc.ModelAdminServiceStub(channel).DeleteProviderModel(
            models_pb2.DeleteProviderModelRequest(name=full), metadata=bearer(address), timeout=TIMEOUT_SECONDS
        )
    print(f"deleted {full}")


@models.command("load")
def load(name: Name, provider: Provider = "ollama", server: Server = None) -> None:
    """Load a model into memory (the local provider: serve this model instead) (admins)."""
    address = server_address(server)
    with open_call_channel(address) as channel:
        m = (
            models_pb2_grpc.ModelAdminServiceStub(channel)
            .LoadProviderModel(
                models_pb2.LoadProviderModelRequest(name=model_name(name, provider)),
                metadata=bearer(address),
                timeout=LOAD_TIMEOUT_SECONDS,
            )
            .provider_model
        )
    print(f"loaded {m.model_id}")


@models.command("unload")
def unload(name: Name, provider: Provider = "ollama", server: Server = None) -> None:
    """Free the memory a loaded model holds (admins)."""
    address = server_address(server)
    full = model_name(name, provider)
    with open_call_channel(address) as channel:
        models_pb2_grpc.ModelAdminServiceStub(channel).UnloadProviderModel(
            models_pb2.UnloadProviderModelRequest(name=full), metadata=bearer(address), timeout=TIMEOUT_SECONDS
        )
    print(f"unloaded {full}")


class PullDisplay:
    """A pull's progress: on a terminal one bar per layer with bytes and speed, elsewhere a line per status."""

    def __init__(self, terminal: bool) -> None:
        self._last = ""
        self._bars: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        if terminal:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self._bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=False),
                TransferSpeedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bars.start()

    def show(self, step: models_pb2.PullProviderModelResponse) -> None:
        if self._bars is not None and step.digest and step.total_bytes:
            task = self._tasks.get(step.digest)
            if task is None:
                task = self._tasks[step.digest] = self._bars.add_task(step.status, total=step.total_bytes)
            self._bars.update(task, completed=step.completed_bytes)
            return
        if step.status and step.status != self._last and not step.done:
            self._last = step.status
            line = step.status
            if step.total_bytes:
                line += f" ({size(step.total_bytes)})"
            if self._bars is not None:
                self._bars.console.print(line, markup=False)
            else:
                print(line, file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None

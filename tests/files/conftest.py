"""A real clamd for the scanning tests, with a signature database written here (the EICAR test file)."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends import MODE

# The EICAR test file: every scanner's harmless test signature.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SIGNATURE = "Devpynode.Test.EICAR"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"zPING\0")
            return conn.recv(16).startswith(b"PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a clamd that detects EICAR as Devpynode.Test.EICAR."""
    binary = shutil.which("clamd") or ("/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists() else None)
    if binary is None:
        if MODE == "require":
            pytest.fail("clamd is required (Debian package clamav-daemon; .ci/run installs it)")
        pytest.skip("clamd not installed (apt-get install clamav-daemon)")
    home = tmp_path_factory.mktemp("clamd")
    (home / "db").mkdir()
    (home / "tmp").mkdir()
    (home / "db" / "test.hdb").write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:{SIGNATURE}\n")  # noqa: S324
    port = _free_port()
    config = home / "clamd.conf"
    config.write_text(
        "\n".join(
            [
                f"DatabaseDirectory {home / 'db'}",
                f"TemporaryDirectory {home / 'tmp'}",
                f"LogFile {home / 'clamd.log'}",
                f"TCPSocket {port}",
                "TCPAddr 127.0.0.1",
                "Foreground yes",
                "StreamMaxLength 64M",
                "",
            ]
        )
    )
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _pong(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log = (home / "clamd.log").read_text() if (home / "clamd.log").exists() else ""
                pytest.fail(f"clamd did not start: {log[-1500:]}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()

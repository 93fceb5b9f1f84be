"""The backend matrix: embedded (SQLite + memory) and real (PostgreSQL + Redis on this machine).

Real backends are used when reachable. `DEVPYNODE_TEST_REAL=require` (what CI sets) turns an
unreachable server into a failure instead of a skip; `=off` skips them.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

PG_ADMIN_URL = os.environ.get("DEVPYNODE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DEVPYNODE_TEST_REDIS", "redis://127.0.0.1:6379/0")
MODE = os.environ.get("DEVPYNODE_TEST_REAL", "auto")


@dataclass(frozen=True)
class Backend:
    """Where one run of the suite keeps its data."""

    name: str
    database_url: str  # empty: SQLite in the test's data dir
    redis_url: str
    redis_prefix: str
    s3_endpoint: str = ""  # empty: files on local disk; else an S3 server (each mesh gets a bucket of its own)


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def real_available() -> tuple[bool, str]:
    """Whether PostgreSQL and Redis answer, and if not, which one is missing."""
    missing = [name for name, port in (("PostgreSQL", 5432), ("Redis", 6379)) if not reachable("127.0.0.1", port)]
    return (not missing, ", ".join(missing))


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def local_model_missing() -> str:
    """Why the real local model (llama-cpp-python's server and SmolLM2) cannot run here, or "" when it can."""
    from pynode.ai.local_model import LocalModelProblem, resolve, server_missing

    try:
        resolve("smollm2")
    except LocalModelProblem as exc:
        return str(exc)
    return server_missing() or ""

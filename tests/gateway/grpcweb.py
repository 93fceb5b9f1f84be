"""A grpc-web client over HTTP/1.1 (httpx), as a browser's transport speaks it: length-prefixed frames, the
status in a trailer frame or, for trailers-only answers, in the response headers."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from google.protobuf.message import Message
from google.rpc import status_pb2

CONTENT_TYPE = "application/grpc-web+proto"


def frame(message: Message) -> bytes:
    data = message.SerializeToString()
    return b"\x00" + len(data).to_bytes(4, "big") + data


@dataclass
class Reply:
    """A grpc-web call's outcome: its messages (with arrival times), status and details."""

    messages: list[bytes] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    status: int | None = None
    message: str = ""
    details: status_pb2.Status | None = None
    headers: dict[str, str] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)


def _trailers(block: bytes) -> dict[str, str]:
    found = {}
    for line in block.decode().split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            found[name.strip().lower()] = value.strip()
    return found


def _settle(reply: Reply, values: dict[str, str]) -> None:
    if "grpc-status" in values:
        reply.status = int(values["grpc-status"])
        reply.message = values.get("grpc-message", "")
        raw = values.get("grpc-status-details-bin")
        if raw:
            reply.details = status_pb2.Status.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))


async def call(
    http: httpx.AsyncClient,
    url: str,
    request: Message,
    token: str = "",
    origin: str = "",
    seconds: float = 60,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One call (unary or server streaming) through the gateway."""
    headers = {
        **(headers or {}),
        "content-type": CONTENT_TYPE,
        "x-grpc-web": "1",
        "x-user-agent": "grpc-web-python/test",
    }
    if token:
        headers["authorization"] = f"Bearer {token}"
    if origin:
        headers["origin"] = origin
    reply = Reply()
    async with http.stream("POST", url, content=frame(request), headers=headers, timeout=seconds) as response:
        reply.headers = {k.lower(): v for k, v in response.headers.items()}
        _settle(reply, reply.headers)  # trailers-only: the status came as headers
        buffer = b""
        async for chunk in response.aiter_bytes():
            buffer += chunk
            while len(buffer) >= 5:
                size = int.from_bytes(buffer[1:5], "big")
                if len(buffer) < 5 + size:
                    break
                flag, body, buffer = buffer[0], buffer[5 : 5 + size], buffer[5 + size :]
                if flag & 0x80:
                    reply.trailers = _trailers(body)
                    _settle(reply, reply.trailers)
                else:
                    reply.messages.append(body)
                    reply.arrivals.append(time.perf_counter())
    return reply


def decoded(reply: Reply, kind: type[Any]) -> list[Any]:
    return [kind.FromString(m) for m in reply.messages]

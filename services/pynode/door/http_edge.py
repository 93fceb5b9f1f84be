"""The door's HTTP edge (aiohttp): OpenAI's REST endpoints in, the AI router's RPCs out, OpenAI's JSON back.

`GET /v1/models` (and `/v1/models/{id}`), `POST /v1/chat/completions` (streamed as server-sent events ending in
`data: [DONE]`, or whole), `POST /v1/embeddings`. Every failure is OpenAI's JSON error with the matching HTTP
status: bad JSON, wrong types and unknown fields 400 (with `param`), a body over DEVPYNODE_DOOR_MAX_BODY_BYTES
413, a body slower than DEVPYNODE_DOOR_BODY_SECONDS 408 (and the connection closed), no credentials 401; the
router's statuses as `errors.py` maps them; anything unexpected 500 with a generic message (the traceback goes
to the log, never to the client).

A stream's last events and the end of its chunked body go out in one write: clients stop reading at
`data: [DONE]`, and one that has not seen the body's end by then closes the connection rather than keeping it
alive (aiohttp's client did, a new connection per stream, when the end came in a write of its own).

A stream's HTTP status is chosen once the router has answered its first piece, so a refused call (401, 404,
429) is an HTTP error, not a 200 whose body says so; an error after that is an SSE `data: {"error": ...}`
event, which OpenAI's clients raise. A client that hangs up cancels the handler (aiohttp's handler
cancellation), which closes the router's call: the router ends the generation and still records its usage.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, cast

import orjson
from aiohttp import web
from devpynode.ai.v1 import ai_pb2

from pynode.core import errors
from pynode.door import file_bytes, translate
from pynode.door.callers import caller_of
from pynode.door.errors import HttpError, error_body, http_error
from pynode.door.ports import Router

log = logging.getLogger("pynode.door")

_JSON = "application/json"
_SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # proxies that buffer by default (nginx) pass events on at once
}
DONE = b"data: [DONE]\n\n"
_AFTER_DELTA = b',"logprobs":null,"finish_reason":'
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=_JSON, headers=headers)


def _error(answer: HttpError) -> web.Response:
    return _json(answer.body, answer.status, answer.headers)


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class BodyTooSlow(Exception):
    """The request body did not arrive within the door's body time (DEVPYNODE_DOOR_BODY_SECONDS)."""


async def _body(request: web.Request, seconds: float) -> Any:
    try:
        # A body that never completes must not hold a handler (and its connection) for ever.
        async with asyncio.timeout(seconds):
            raw = await request.read()  # over client_max_size: HTTPRequestEntityTooLarge, answered 413
    except TimeoutError:
        raise BodyTooSlow from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.InvalidArgument(
            "We could not parse the JSON body of your request. Send a JSON object with Content-Type: application/json."
        ) from None


async def _drain(rest: AsyncIterator[Any]) -> None:
    """Read the router's stream to its status after the last piece: cancelling it there would record a whole
    answer as cancelled."""
    async for _ in rest:
        pass


def _model_entry(model: ai_pb2.Model) -> dict[str, Any]:
    return {"id": model.id, "object": "model", "created": 0, "owned_by": model.provider or "devpynode"}


class DoorEdge:
    """The aiohttp application: routes, the error middleware and the relays."""

    def __init__(
        self, router: Router, max_body_bytes: int, body_seconds: float = 60.0, files: file_bytes.Files | None = None
    ) -> None:
        self._router = router
        self._body_seconds = body_seconds
        self.app = web.Application(client_max_size=max_body_bytes, middlewares=[self._own_context, self._errors])
        if files is not None:  # a file's bytes over plain HTTP (file_bytes.py), in the REST API's error shape
            file_bytes.FileBytes(files, body_seconds).add_routes(self.app)
        self.app.router.add_get("/healthz", self._health)
        self.app.router.add_get("/v1/models", self._models)
        self.app.router.add_get("/v1/models/{model:.+}", self._model)
        self.app.router.add_post("/v1/chat/completions", self._chat)
        self.app.router.add_post("/v1/embeddings", self._embeddings)

    @web.middleware
    async def _own_context(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Each request in a task and contextvars context of its own, as each gRPC call has: the router's edge,
        called in-process, binds the caller, request id and deadline into the running context, and aiohttp
        serves a kept-alive connection's requests in one task (a deadline left there would cut the next call).
        The connection's cancellation (the client hung up) cancels this task too."""
        handling = cast("Coroutine[Any, Any, web.StreamResponse]", handler(request))
        return await asyncio.create_task(handling, context=contextvars.copy_context())

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(file_bytes.PREFIXES):
            return await self._file_errors(request, handler)
        try:
            return await handler(request)
        except errors.DomainError as error:
            return _error(http_error(error, model_param=request.path != "/v1/models"))
        except BodyTooSlow:
            slow = _json(
                error_body(
                    f"The request body did not arrive within {self._body_seconds:g} s "
                    "(DEVPYNODE_DOOR_BODY_SECONDS); send it whole, promptly.",
                    "invalid_request_error",
                    code="request_timeout",
                ),
                408,
            )
            slow.force_close()  # what is left of the body is not waited for
            return slow
        except web.HTTPRequestEntityTooLarge:
            limit = request.app._client_max_size
            return _json(
                error_body(
                    f"Request body too large: at most {limit} bytes (DEVPYNODE_DOOR_MAX_BODY_BYTES).",
                    "invalid_request_error",
                    code="request_too_large",
                ),
                413,
            )
        except web.HTTPException as error:  # aiohttp's own answers (404 path, 405 method) in OpenAI's shape
            if error.status < 400:
                raise
            message = f"{request.method} {request.path}: {error.reason}"
            code = error.reason.lower().replace(" ", "_")
            allow = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
            return _json(error_body(message, "invalid_request_error", code=code), error.status, allow)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("door: unexpected error in %s %s", request.method, request.path)
            return _error(http_error(errors.Internal("unexpected")))

    async def _file_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The file bytes' paths answer errors as the REST API does: JSON google.rpc.Status."""
        try:
            return await handler(request)
        except errors.DomainError as error:
            return file_bytes.status_answer(error)
        except file_bytes.BodyStalled:
            slow = file_bytes.status_answer(
                errors.DeadlineExceeded(
                    f"the upload's body paused for more than {self._body_seconds:g} s "
                    "(DEVPYNODE_DOOR_BODY_SECONDS); nothing was stored: send it again, or resume with an upload session"
                )
            )
            slow.set_status(408)
            slow.force_close()  # what is left of the body is not waited for
            return slow
        except web.HTTPException as error:
            if error.status < 400:
                raise
            answer = file_bytes.status_answer(errors.NotFound(f"{request.method} {request.path}: {error.reason}"))
            answer.set_status(error.status)
            if "Allow" in error.headers:
                answer.headers["Allow"] = error.headers["Allow"]
            return answer
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("door: unexpected error in %s %s", request.method, request.path)
            return file_bytes.status_answer(errors.Internal("internal error; the server logged it"))

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def _models(self, request: web.Request) -> web.StreamResponse:
        models = await self._router.models(caller_of(request))
        # Not the router's "provider/*" placeholders (a provider that did not answer): clients offer every id listed.
        listed = [m for m in models if not m.id.endswith("/*")]
        return _json({"object": "list", "data": [_model_entry(m) for m in listed]})

    async def _model(self, request: web.Request) -> web.StreamResponse:
        wanted = request.match_info["model"]
        for model in await self._router.models(caller_of(request)):
            if model.id == wanted:
                return _json(_model_entry(model))
        raise errors.NotFound(f"The model `{wanted}` does not exist or you do not have access to it.")

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        caller = caller_of(request)
        embed, encoding = translate.embed_request(await _body(request, self._body_seconds))
        answer = await self._router.embed(caller, embed)
        data = []
        for i, vector in enumerate(answer.embeddings):
            values: Any = list(vector.values)
            if encoding == "base64":  # little-endian float32, as OpenAI's clients decode it
                values = base64.b64encode(struct.pack(f"<{len(vector.values)}f", *vector.values)).decode()
            data.append({"object": "embedding", "index": i, "embedding": values})
        prompt = int(answer.usage.prompt_tokens)
        return _json(
            {
                "object": "list",
                "data": data,
                "model": answer.model or embed.model,
                "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        caller = caller_of(request)
        chat = translate.chat_request(await _body(request, self._body_seconds))
        pieces = self._router.generate(caller, chat.generate)
        try:
            first = await anext(pieces, None)  # a refusal raises here, before any status is sent
            if chat.stream:
                return await self._stream(request, chat, first, pieces)
            return await self._whole(chat, first, pieces)
        finally:
            await pieces.aclose()  # type: ignore[attr-defined]  # cancels the router's call if it still runs

    async def _whole(
        self, chat: translate.ChatRequest, first: ai_pb2.GenerateResponse | None, rest: AsyncIterator[Any]
    ) -> web.StreamResponse:
        texts: list[str] = []
        calls = translate.ToolCalls()
        model = chat.generate.model
        last = first
        piece = first
        while piece is not None:
            texts.append(piece.text)
            for delta in piece.tool_calls:
                calls.add(delta)
            model = piece.model or model
            last = piece
            piece = await anext(rest, None)
        if last is None or last.finish_reason == ai_pb2.FINISH_REASON_UNSPECIFIED:
            raise errors.Unavailable("the AI router's stream ended before the answer did; retry", retry_after=1.0)
        if last.finish_reason == ai_pb2.FINISH_REASON_ERROR:
            return _json(error_body("the model failed while answering; retry", "api_error", code="model_error"), 502)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
        whole_calls = calls.whole()
        if whole_calls:
            message["tool_calls"] = whole_calls
        return _json(
            {
                "id": translate.completion_id(),
                "object": "chat.completion",
                "created": translate.now(),
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": translate.finish_reason(last.finish_reason)}
                ],
                "usage": translate.usage(last.usage),
                "system_fingerprint": None,
            }
        )

    async def _stream(
        self,
        request: web.Request,
        chat: translate.ChatRequest,
        first: ai_pb2.GenerateResponse | None,
        rest: AsyncIterator[Any],
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers=_SSE_HEADERS)
        response.enable_chunked_encoding()
        await response.prepare(request)
        ident, created = translate.completion_id(), translate.now()
        model = (first.model if first is not None else "") or chat.generate.model
        seen: set[int] = set()
        chunks = ChunkFormat(ident, created, chat.include_usage)
        chunk = chunks.chunk
        chunks.model(model)
        out = chunk({"role": "assistant", "content": ""})
        piece = first
        last = None
        try:
            while piece is not None:
                model = piece.model or model
                chunks.model(model)
                if piece.tool_calls:
                    delta: dict[str, Any] = {"tool_calls": translate.delta_tool_calls(piece.tool_calls, seen)}
                    if piece.text:
                        delta = {"content": piece.text, **delta}
                    out += chunk(delta)
                elif piece.text:
                    out += chunks.text(piece.text)
                if piece.finish_reason:
                    last = piece
                    await _drain(rest)
                    break
                await response.write(out)
                out = b""
                piece = await anext(rest, None)
        except errors.DomainError as error:  # after the status was sent: an error event, as OpenAI streams do
            await response.write_eof(out + _event(http_error(error).body) + DONE)
            return response
        if last is None:
            failed = error_body("the AI router's stream ended before the answer did; retry", "api_error")
            await response.write_eof(out + _event(failed) + DONE)
            return response
        if last.finish_reason == ai_pb2.FINISH_REASON_ERROR:
            failed = error_body("the model failed while answering; retry", "api_error", code="model_error")
            await response.write_eof(out + _event(failed) + DONE)
            return response
        out += chunk({}, translate.finish_reason(last.finish_reason))
        if chat.include_usage:
            out += _event(
                {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": None,
                    "choices": [],
                    "usage": translate.usage(last.usage),
                }
            )
        await response.write_eof(out + DONE)
        return response


class ChunkFormat:
    """One stream's `chat.completion.chunk` events, the bytes around the delta made once per model rather than
    encoding the whole object per token (the same bytes, key for key, as `orjson.dumps` of the dict)."""

    __slots__ = ("_before", "_created", "_ident", "_model", "_usage")

    def __init__(self, ident: str, created: int, include_usage: bool) -> None:
        self._ident = ident
        self._created = created
        self._usage = b',"usage":null' if include_usage else b""
        self._model: str | None = None
        self._before = b""

    def model(self, model: str) -> None:
        """The model the next chunks name (the router may name the one an alias resolved to)."""
        if model == self._model:
            return
        self._model = model
        self._before = (
            b'data: {"id":'
            + orjson.dumps(self._ident)
            + b',"object":"chat.completion.chunk","created":'
            + orjson.dumps(self._created)
            + b',"model":'
            + orjson.dumps(model)
            + b',"system_fingerprint":null,"choices":[{"index":0,"delta":'
        )

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return self._before + orjson.dumps(delta) + _AFTER_DELTA + orjson.dumps(finish) + b"}]" + self._usage + b"}\n\n"

    def text(self, text: str) -> bytes:
        return (
            self._before
            + b'{"content":'
            + orjson.dumps(text)
            + b"}"
            + _AFTER_DELTA
            + b"null}]"
            + self._usage
            + b"}\n\n"
        )


class DoorServer:
    """The listener: an aiohttp runner on host:port (0 picks a free port), stopped with the process.

    aiohttp has no header timeout of its own, but its keep-alive timer does the work: armed when a connection
    opens and when an answer ends, it closes the connection if by then no whole request head has arrived (a
    client that sends its headers a byte at a time, or nothing), and it never fires while an answer is being
    written, so token streams run as long as the model writes. Bodies have their own bound (DoorEdge).
    """

    def __init__(self, edge: DoorEdge, host: str, port: int, headers_seconds: float = 15.0) -> None:
        self._runner = web.AppRunner(
            edge.app, access_log=None, handler_cancellation=True, keepalive_timeout=headers_seconds
        )
        self._host = host
        self._port = port
        self.port = 0

    async def start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, backlog=1024)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self._port
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()

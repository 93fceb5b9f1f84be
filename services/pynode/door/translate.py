"""OpenAI's JSON in, the AI router's messages out, and back: the door's whole vocabulary, with no model logic.

Requests are checked field by field; a field the door cannot honour is refused with 400 and its name as
`param`, never silently dropped. Unknown top-level fields are refused too, as OpenAI itself does
("Unrecognized request argument supplied"), except a few that clients send by habit and that change nothing
the router does (`user`, `store`, `metadata`, ...), which are accepted and ignored. Limits the router checks
(lengths, counts, ranges) are left to it: its field violations come back with the matching OpenAI `param`.

One field is Dev-PyNode's own: `tokens_per_second`, the built-in development model's pace (the router's
`GenerateOptions.tokens_per_second`), which OpenAI clients send in their extra body (`extra_body=` in the SDK).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from devpynode.ai.v1 import ai_pb2

from pynode.core.errors import FieldViolation, InvalidArgument

_ROLES = {
    "system": ai_pb2.MESSAGE_ROLE_SYSTEM,
    "developer": ai_pb2.MESSAGE_ROLE_SYSTEM,  # OpenAI's newer name for system instructions
    "user": ai_pb2.MESSAGE_ROLE_USER,
    "assistant": ai_pb2.MESSAGE_ROLE_ASSISTANT,
    "tool": ai_pb2.MESSAGE_ROLE_TOOL,
}
_FINISH: dict[int, str] = {
    ai_pb2.FINISH_REASON_STOP: "stop",
    ai_pb2.FINISH_REASON_LENGTH: "length",
    ai_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls",
    # The router's longest generation time cut the answer: the closest OpenAI reason is a length limit.
    ai_pb2.FINISH_REASON_TIME_LIMIT: "length",
    ai_pb2.FINISH_REASON_CANCELLED: "stop",
}
_CHOICES = {
    "auto": ai_pb2.TOOL_CHOICE_MODE_AUTO,
    "none": ai_pb2.TOOL_CHOICE_MODE_NONE,
    "required": ai_pb2.TOOL_CHOICE_MODE_REQUIRED,
}
# Accepted and ignored: bookkeeping fields of OpenAI's own platform that change nothing in the answer.
_IGNORED = {"user", "store", "metadata", "service_tier", "parallel_tool_calls", "prompt_cache_key", "safety_identifier"}
# Accepted only at the value that means "off" (anything else would change the answer in a way the router cannot).
_OFF_VALUES: dict[str, tuple[Any, ...]] = {
    "n": (1, None),
    "logprobs": (False, None),
    "top_logprobs": (0, None),
    "frequency_penalty": (0, 0.0, None),
    "presence_penalty": (0, 0.0, None),
    "logit_bias": (None, {}),
    "modalities": (None, ["text"]),
}
_CHAT_FIELDS = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "tools",
    "tool_choice",
    "response_format",
    "tokens_per_second",  # Dev-PyNode's extension: builtin/echo's pace
    *_IGNORED,
    *_OFF_VALUES,
}
_EMBED_FIELDS = {"model", "input", "dimensions", "encoding_format", "user"}
_DATA_URL = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,(?P<data>.*)$", re.DOTALL)
# Router field paths (proto names) -> OpenAI's parameter names, for its field violations.
_PARAMS = (
    (re.compile(r"^options\.(temperature|top_p|seed|stop|max_tokens|tokens_per_second)"), r"\1"),
    (re.compile(r"^tools\[(\d+)\]\.parameters_json"), r"tools[\1].function.parameters"),
    (re.compile(r"^tools\[(\d+)\]\.(name|description)"), r"tools[\1].function.\2"),
    (re.compile(r"^tool_choice.*"), "tool_choice"),
    (
        re.compile(r"^messages\[(\d+)\]\.tool_calls\[(\d+)\]\.arguments_json"),
        r"messages[\1].tool_calls[\2].function.arguments",
    ),
    (re.compile(r"^messages\[(\d+)\]\.tool_calls\[(\d+)\]\.name"), r"messages[\1].tool_calls[\2].function.name"),
    (re.compile(r"^messages\[(\d+)\]\.images"), r"messages[\1].content"),
    (re.compile(r"^inputs"), "input"),
)


def openai_param(field: str) -> str:
    """The OpenAI parameter a router field violation names (`options.temperature` -> `temperature`)."""
    for pattern, replacement in _PARAMS:
        if pattern.match(field):
            return pattern.sub(replacement, field, count=1)
    return field


def _bad(param: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, [FieldViolation(param, message)])


@dataclass(frozen=True)
class ChatRequest:
    """A chat completion request, translated: the router's request and how the answer is to be sent."""

    generate: ai_pb2.GenerateRequest
    stream: bool
    include_usage: bool


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad(what, f"{what} must be a JSON object")
    return body


def _string(value: Any, param: str, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise _bad(param, f"{param} must be a non-empty string" if required else f"{param} must be a string")
    return value


def _number(value: Any, param: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(param, f"{param} must be a number")
    return float(value)


def _integer(value: Any, param: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(param, f"{param} must be an integer")
    return value


def _unknown(body: dict[str, Any], known: set[str]) -> None:
    for name in body:
        if name not in known:
            raise _bad(name, f"Unrecognized request argument supplied: {name}")


def _content(value: Any, param: str, message: ai_pb2.ChatMessage) -> None:
    """A message's content: a string, null, or a list of parts (text, and images as data: URLs)."""
    if value is None or isinstance(value, str):
        message.content = value or ""
        return
    if not isinstance(value, list):
        raise _bad(param, f"{param} must be a string or an array of content parts")
    texts = []
    for j, part in enumerate(value):
        where = f"{param}[{j}]"
        part = _object(part, where)
        kind = part.get("type")
        if kind == "text":
            texts.append(_string(part.get("text"), f"{where}.text", required=True))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            found = _DATA_URL.match(url) if isinstance(url, str) else None
            if found is None:
                raise _bad(f"{where}.image_url", "images must be given as data:image/...;base64, URLs")
            try:
                message.images.add(data=base64.b64decode(found["data"], validate=True))
            except (binascii.Error, ValueError):
                raise _bad(f"{where}.image_url", "the image's base64 data is malformed") from None
        else:
            raise _bad(f"{where}.type", "content parts are `text` or `image_url`")
    message.content = "".join(texts)


def _message(raw: Any, i: int) -> ai_pb2.ChatMessage:
    where = f"messages[{i}]"
    raw = _object(raw, where)
    role = raw.get("role")
    if role not in _ROLES:
        raise _bad(f"{where}.role", f"{where}.role must be one of system, developer, user, assistant, tool")
    message = ai_pb2.ChatMessage(role=_ROLES[role])
    _content(raw.get("content"), f"{where}.content", message)
    message.tool_call_id = _string(raw.get("tool_call_id"), f"{where}.tool_call_id")
    calls = raw.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list):
            raise _bad(f"{where}.tool_calls", f"{where}.tool_calls must be an array")
        for j, call in enumerate(calls):
            call = _object(call, f"{where}.tool_calls[{j}]")
            function = _object(call.get("function"), f"{where}.tool_calls[{j}].function")
            message.tool_calls.add(
                id=_string(call.get("id"), f"{where}.tool_calls[{j}].id", required=True),
                name=_string(function.get("name"), f"{where}.tool_calls[{j}].function.name", required=True),
                arguments_json=_string(function.get("arguments"), f"{where}.tool_calls[{j}].function.arguments"),
            )
    return message


def _tools(raw: Any, request: ai_pb2.GenerateRequest) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        raise _bad("tools", "tools must be an array")
    import orjson

    for i, tool in enumerate(raw):
        tool = _object(tool, f"tools[{i}]")
        if tool.get("type", "function") != "function":
            raise _bad(f"tools[{i}].type", "only `function` tools are supported")
        function = _object(tool.get("function"), f"tools[{i}].function")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _bad(f"tools[{i}].function.parameters", "parameters must be a JSON Schema object")
        try:
            schema = orjson.dumps(parameters).decode() if parameters is not None else ""
        except TypeError:  # orjson's "Recursion limit reached": nested deeper than any schema needs
            raise _bad(f"tools[{i}].function.parameters", "the schema is nested too deeply") from None
        request.tools.add(
            name=_string(function.get("name"), f"tools[{i}].function.name", required=True),
            description=_string(function.get("description"), f"tools[{i}].function.description"),
            parameters_json=schema,
        )


def _tool_choice(raw: Any, request: ai_pb2.GenerateRequest) -> None:
    if raw is None:
        return
    if isinstance(raw, str) and raw in _CHOICES:
        request.tool_choice.mode = _CHOICES[raw]
        return
    if isinstance(raw, dict) and raw.get("type") == "function" and isinstance(raw.get("function"), dict):
        request.tool_choice.mode = ai_pb2.TOOL_CHOICE_MODE_NAMED
        request.tool_choice.name = _string(raw["function"].get("name"), "tool_choice", required=True)
        return
    raise _bad("tool_choice", 'tool_choice must be "auto", "none", "required" or {"type": "function", ...}')


def _stop(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return list(raw)
    raise _bad("stop", "stop must be a string or an array of strings")


def chat_request(body: Any) -> ChatRequest:
    """A /v1/chat/completions body as the router's GenerateRequest; InvalidArgument names the bad param."""
    body = _object(body, "body")
    _unknown(body, _CHAT_FIELDS)
    for name, allowed in _OFF_VALUES.items():
        if name in body and body[name] not in allowed:
            raise _bad(name, f"{name}={body[name]!r} is not supported by this server")
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        raise _bad("response_format", 'only {"type": "text"} is supported by this server')
    stream = body.get("stream", False)
    if not isinstance(stream, bool | None):
        raise _bad("stream", "stream must be a boolean")
    stream_options = body.get("stream_options")
    include_usage = False
    if stream_options is not None:
        stream_options = _object(stream_options, "stream_options")
        include_usage = stream_options.get("include_usage", False)
        if not isinstance(include_usage, bool):
            raise _bad("stream_options.include_usage", "include_usage must be a boolean")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "messages must be a non-empty array")
    request = ai_pb2.GenerateRequest(
        model=_string(body.get("model"), "model", required=True),
        messages=[_message(m, i) for i, m in enumerate(messages)],
    )
    options = request.options
    temperature = _number(body.get("temperature"), "temperature")
    if temperature is not None:
        options.temperature = temperature
    top_p = _number(body.get("top_p"), "top_p")
    if top_p is not None:
        options.top_p = top_p
    limit = _integer(body.get("max_completion_tokens"), "max_completion_tokens")
    if limit is None:
        limit = _integer(body.get("max_tokens"), "max_tokens")
    if limit is not None:
        if limit < 1:
            raise _bad("max_tokens", "max_tokens must be at least 1")
        options.max_tokens = limit
    seed = _integer(body.get("seed"), "seed")
    if seed is not None:
        options.seed = seed
    options.stop.extend(_stop(body.get("stop")))
    pace = _integer(body.get("tokens_per_second"), "tokens_per_second")
    if pace is not None:
        options.tokens_per_second = pace
    _tools(body.get("tools"), request)
    _tool_choice(body.get("tool_choice"), request)
    return ChatRequest(request, bool(stream), include_usage)


def embed_request(body: Any) -> tuple[ai_pb2.EmbedRequest, str]:
    """A /v1/embeddings body as the router's EmbedRequest, and the encoding asked for (`float` or `base64`)."""
    body = _object(body, "body")
    _unknown(body, _EMBED_FIELDS)
    raw = body.get("input")
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(s, str) for s in raw):
        inputs = list(raw)
    else:
        # Token arrays (lists of integers) need the model's tokenizer, which the router does not expose.
        raise _bad("input", "input must be a string or a non-empty array of strings")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise _bad("encoding_format", 'encoding_format must be "float" or "base64"')
    dimensions = _integer(body.get("dimensions"), "dimensions") or 0
    return ai_pb2.EmbedRequest(
        model=_string(body.get("model"), "model", required=True), inputs=inputs, dimensions=dimensions
    ), encoding


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def finish_reason(reason: int) -> str:
    return _FINISH.get(reason, "stop")


def usage(piece: ai_pb2.Usage) -> dict[str, int]:
    prompt, completion = int(piece.prompt_tokens), int(piece.completion_tokens)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class ToolCalls:
    """Whole tool calls put together from the router's pieces, for a non-streamed answer."""

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}

    def add(self, piece: ai_pb2.ToolCallDelta) -> None:
        call = self._calls.setdefault(piece.index, ["", "", ""])
        call[0] = piece.id or call[0]
        call[1] = piece.name or call[1]
        call[2] += piece.arguments_json

    def whole(self) -> list[dict[str, Any]]:
        return [
            {"id": c[0], "type": "function", "function": {"name": c[1], "arguments": c[2]}}
            for _, c in sorted(self._calls.items())
        ]


def delta_tool_calls(pieces: Any, seen: set[int]) -> list[dict[str, Any]]:
    """The router's tool call pieces as OpenAI stream deltas (id, type and name on a call's first piece)."""
    found = []
    for piece in pieces:
        delta: dict[str, Any] = {"index": piece.index, "function": {"arguments": piece.arguments_json}}
        if piece.index not in seen:
            seen.add(piece.index)
            delta["id"] = piece.id
            delta["type"] = "function"
            delta["function"]["name"] = piece.name
        found.append(delta)
    return found


def now() -> int:
    return int(time.time())

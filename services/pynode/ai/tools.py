"""Tool calling and pictures in prompts: the checks on what a caller sends, and tool-call pieces put together.

Tool parameters travel as JSON text end to end (a JSON Schema object, parsed only to check it is one and to
hand it to a provider), so a schema reaches the model as the caller wrote it. Streamed tool calls come in
pieces (`ToolCallDelta`): OpenAI-compatible servers send the arguments in fragments, Ollama sends whole calls;
`assemble` makes whole calls of either. Pictures are recognised from their first bytes, never from a name or
a declared type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from pynode.ai.domain import NAMED, REQUIRED, ToolCall, ToolCallDelta, ToolChoice, ToolSpec
from pynode.core.errors import FieldViolation

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EMPTY_PARAMETERS = '{"type":"object","properties":{}}'

# Magic numbers of the picture formats vision models take.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_type(data: bytes) -> str | None:
    """The media type of a PNG, JPEG, GIF or WebP picture from its bytes; None for anything else."""
    for signature, media_type in _SIGNATURES:
        if data.startswith(signature):
            return media_type
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def parameters_object(text: str) -> dict[str, object]:
    """A tool's parameters as a JSON object (the empty schema when none); ValueError when not an object."""
    value = json.loads(text or EMPTY_PARAMETERS)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def tool_violations(tools: tuple[ToolSpec, ...], choice: ToolChoice) -> list[FieldViolation]:
    """What is wrong with a request's tools and tool choice (empty when nothing is)."""
    out = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if not TOOL_NAME.match(tool.name):
            out.append(FieldViolation(f"tools[{i}].name", "must be 1 to 64 letters, digits, '_' or '-'", "INVALID"))
        elif tool.name in seen:
            out.append(FieldViolation(f"tools[{i}].name", f"{tool.name!r} is defined twice", "DUPLICATE"))
        seen.add(tool.name)
        try:
            parameters_object(tool.parameters)
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python parses
            out.append(
                FieldViolation(f"tools[{i}].parameters_json", "must be a JSON Schema object as JSON text", "INVALID")
            )
    if choice.mode in (REQUIRED, NAMED) and not tools:
        out.append(FieldViolation("tool_choice", f"{choice.mode} needs at least one tool in tools", "INVALID"))
    if choice.mode == NAMED and tools and choice.name not in seen:
        out.append(FieldViolation("tool_choice.name", f"names no tool of this request ({choice.name!r})", "INVALID"))
    return out


def arguments_violations(calls: Iterable[ToolCall], path: str) -> list[FieldViolation]:
    """Arguments of calls in the history must be JSON objects (providers parse them)."""
    out = []
    for i, call in enumerate(calls):
        try:
            ok = isinstance(json.loads(call.arguments or "{}"), dict)
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python parses
            ok = False
        if not ok:
            out.append(FieldViolation(f"{path}[{i}].arguments_json", "must be a JSON object as JSON text", "INVALID"))
    return out


def assemble(deltas: Iterable[ToolCallDelta]) -> list[ToolCall]:
    """Whole calls from their pieces, in index order."""
    ids: dict[int, str] = {}
    names: dict[int, str] = {}
    arguments: dict[int, list[str]] = {}
    for delta in deltas:
        arguments.setdefault(delta.index, [])
        if delta.id:
            ids[delta.index] = delta.id
        if delta.name:
            names[delta.index] = delta.name
        if delta.arguments:
            arguments[delta.index].append(delta.arguments)
    return [ToolCall(ids.get(i, ""), names.get(i, ""), "".join(arguments[i])) for i in sorted(arguments)]


def coalesce(deltas: list[ToolCallDelta]) -> list[ToolCallDelta]:
    """Consecutive pieces of the same call merged into one (the relay's coalescing under back-pressure)."""
    out: list[ToolCallDelta] = []
    for delta in deltas:
        last = out[-1] if out else None
        if last is not None and last.index == delta.index and not delta.id and not delta.name:
            out[-1] = ToolCallDelta(last.index, last.id, last.name, last.arguments + delta.arguments)
        else:
            out.append(delta)
    return out


def whole(calls: Iterable[ToolCall]) -> tuple[ToolCallDelta, ...]:
    """Whole calls as one piece each (a cached answer's replay, Ollama's calls)."""
    return tuple(ToolCallDelta(i, c.id, c.name, c.arguments) for i, c in enumerate(calls))

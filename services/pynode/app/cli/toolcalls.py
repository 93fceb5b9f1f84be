"""Tools from a terminal: definitions read from a JSON file, and calls and results printed readably.

The file holds a list of tools in OpenAI's shape (`{"type": "function", "function": {name, description,
parameters}}`) or the short one (`{name, description, parameters}`); `parameters` is a JSON Schema object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pynode.app.cli.common import CliError

MAX_TOOLS = 64


def load_tools(path: Path) -> list[tuple[str, str, str]]:
    """(name, description, parameters as JSON text) of each tool in the file; CliError says what is wrong."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"--tools {path}: cannot be read ({exc.strerror})", 2) from None
    except ValueError as exc:
        raise CliError(f"--tools {path}: not JSON ({exc})", 2) from None
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_TOOLS:
        raise CliError(f"--tools {path}: must be a JSON list of 1 to {MAX_TOOLS} tools", 2)
    tools = []
    for i, item in enumerate(raw):
        spec: Any = item.get("function", item) if isinstance(item, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise CliError(f"--tools {path}: tool {i} has no name (see `devpynode ask --help`)", 2)
        parameters = spec.get("parameters", {"type": "object", "properties": {}})
        tools.append((spec["name"], str(spec.get("description", "")), json.dumps(parameters, ensure_ascii=False)))
    return tools


def call_line(name: str, arguments: str, call_id: str) -> str:
    """A tool call as one line: `-> get_weather({"city": "Paris"})  [call call_1]`."""
    return f"-> {name}({arguments})  [call {call_id}]"


def result_line(call_id: str, content: str) -> str:
    """A tool result as one line: `<- call_1: {"sky": "sunny"}`."""
    return f"<- {call_id}: {content}"

"""The door's mapping of the router's statuses to OpenAI's errors, and of OpenAI's fields to the router's, for the
statuses a test mesh cannot easily provoke (403, 503, 504, an internal error) and the field names in between."""

from __future__ import annotations

import pytest
from devpynode.ai.v1 import ai_pb2

from pynode.core import errors
from pynode.door import translate
from pynode.door.errors import INTERNAL_MESSAGE, http_error


@pytest.mark.parametrize(
    ("error", "status", "kind", "retry_after"),
    [
        (errors.PermissionDenied("admins only"), 403, "permission_error", None),
        (errors.Unauthenticated("token expired"), 401, "invalid_request_error", None),
        (errors.QuotaExceeded("slow down", retry_after=2.2), 429, "rate_limit_error", "3"),
        (errors.Unavailable("the ai service is unreachable; retry shortly", retry_after=1.0), 503, "api_error", "1"),
        (errors.Unavailable("no deployment answers"), 503, "api_error", None),
        (errors.DeadlineExceeded("too slow"), 504, "api_error", None),
    ],
)
def test_statuses_map_to_http_and_openais_types(
    error: errors.DomainError, status: int, kind: str, retry_after: str | None
) -> None:
    answer = http_error(error)
    assert answer.status == status and answer.body["error"]["type"] == kind
    assert answer.body["error"]["message"] == error.message
    assert answer.headers.get("Retry-After") == retry_after


def test_an_internal_error_says_nothing_of_its_cause() -> None:
    answer = http_error(errors.Internal("database password is hunter2"))
    assert answer.status == 500 and answer.body["error"]["message"] == INTERNAL_MESSAGE
    assert "hunter2" not in str(answer.body)


def test_router_field_violations_name_openais_params() -> None:
    violation = errors.FieldViolation("options.temperature", "must be between 0 and 2", "OUT_OF_RANGE")
    answer = http_error(errors.InvalidArgument("request has invalid fields: options.temperature", [violation]))
    assert answer.status == 400 and answer.body["error"]["param"] == "temperature"
    assert answer.body["error"]["message"] == "Invalid 'temperature': must be between 0 and 2."
    assert translate.openai_param("tools[2].parameters_json") == "tools[2].function.parameters"
    assert translate.openai_param("messages[1].tool_calls[0].arguments_json") == (
        "messages[1].tool_calls[0].function.arguments"
    )
    assert translate.openai_param("inputs") == "input"


PNG = "data:image/png;base64,iVBORw0KGgo="
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}


def test_a_request_becomes_the_routers_with_every_option() -> None:
    chat = translate.chat_request(
        {
            "model": "default",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}]},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
            "max_tokens": 9,
            "max_completion_tokens": 7,
            "stop": "END",
            "seed": 3,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}],
            "tool_choice": "none",
            "user": "ignored",
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )  # fmt: skip
    request = chat.generate
    assert chat.stream and chat.include_usage
    assert [m.role for m in request.messages] == [
        ai_pb2.MESSAGE_ROLE_SYSTEM,
        ai_pb2.MESSAGE_ROLE_USER,
        ai_pb2.MESSAGE_ROLE_ASSISTANT,
        ai_pb2.MESSAGE_ROLE_TOOL,
    ]
    assert request.messages[1].images[0].data.startswith(b"\x89PNG")
    assert request.messages[2].tool_calls[0].arguments_json == '{"a": 1}' and request.messages[3].tool_call_id == "c1"
    assert request.options.max_tokens == 7 and list(request.options.stop) == ["END"] and request.options.seed == 3
    assert request.tools[0].parameters_json == '{"type":"object","properties":{"a":{"type":"integer"}}}'
    assert request.tool_choice.mode == ai_pb2.TOOL_CHOICE_MODE_NONE

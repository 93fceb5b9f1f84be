"""REST/JSON through the browsers' port (Envoy's gRPC-JSON transcoder in front of `devpynode serve`), spoken as
`curl` would: JSON bodies, path and query parameters, bearer tokens, errors as JSON `google.rpc.Status` with the
matching HTTP status, server streams as newline-delimited JSON."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.client import PASSWORD, new_email
from tests.gateway.test_local_gateway import _port, _serve


@pytest.fixture(scope="module")
async def rest(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    port = _port()
    process, _, _ = await _serve(tmp_path_factory.mktemp("rest"), port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()


async def _signed_in(http: httpx.AsyncClient, base: str) -> dict[str, str]:
    answer = await http.post(
        f"{base}/v1/auth:register", json={"email": new_email(), "password": PASSWORD, "displayName": "Rest"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["user"]["displayName"] == "Rest" and body["tokens"]["accessToken"]
    return {"authorization": f"Bearer {body['tokens']['accessToken']}"}


async def test_unary_calls_with_path_query_and_body(rest: str) -> None:
    async with httpx.AsyncClient() as http:
        auth = await _signed_in(http, rest)
        me = await http.get(f"{rest}/v1/users/me", headers=auth)
        assert me.status_code == 200 and me.json()["user"]["role"]
        created = await http.post(
            f"{rest}/v1/conversations", json={"title": "over REST", "model": "builtin/echo"}, headers=auth
        )
        assert created.status_code == 200, created.text
        conversation = created.json()["conversation"]
        got = await http.get(f"{rest}/v1/conversations/{conversation['id']}", headers=auth)
        assert got.json()["conversation"]["title"] == "over REST"
        renamed = await http.patch(
            f"{rest}/v1/conversations/{conversation['id']}", json={"title": "renamed"}, headers=auth
        )
        assert renamed.status_code == 200, renamed.text
        listed = await http.get(f"{rest}/v1/conversations", params={"pageSize": 1}, headers=auth)
        assert [c["title"] for c in listed.json()["conversations"]] == ["renamed"]
        deleted = await http.delete(f"{rest}/v1/conversations/{conversation['id']}", headers=auth)
        assert deleted.status_code == 200
        gone = await http.get(f"{rest}/v1/conversations/{conversation['id']}", headers=auth)
        assert gone.status_code == 404


async def test_errors_are_json_statuses_with_the_matching_http_status(rest: str) -> None:
    async with httpx.AsyncClient() as http:
        anonymous = await http.get(f"{rest}/v1/users/me")
        assert anonymous.status_code == 401
        status = anonymous.json()
        assert status["code"] == 16 and "access token" in status["message"]
        auth = await _signed_in(http, rest)
        missing = await http.get(f"{rest}/v1/files/{uuid.uuid4()}", headers=auth)
        assert missing.status_code == 404 and missing.json()["code"] == 5
        invalid = await http.get(f"{rest}/v1/files/not-a-uuid", headers=auth)
        assert invalid.status_code == 400
        details = invalid.json()["details"]
        violations = [v for d in details if d["@type"].endswith("BadRequest") for v in d["fieldViolations"]]
        assert violations and violations[0]["field"] == "file_id"
        unknown_query = await http.get(f"{rest}/v1/conversations", params={"pagesize": 5}, headers=auth)
        assert unknown_query.status_code == 400
        malformed = await http.post(
            f"{rest}/v1/conversations", content=b'{"title": ', headers={**auth, "content-type": "application/json"}
        )
        assert malformed.status_code == 400
        wrong_type = await http.post(f"{rest}/v1/conversations", json={"title": ["a", "list"]}, headers=auth)
        assert wrong_type.status_code == 400
        huge = await http.post(
            f"{rest}/v1/conversations", json={"title": "x" * (5 * 1024 * 1024)}, headers=auth, timeout=60
        )
        assert huge.status_code == 413, huge.status_code
        # What Envoy answers itself is JSON google.rpc.Status too, never the transcoder's plain text.
        # The malformed body and the 413 are found once the transcoder has rewritten the path to the RPC's.
        for answer, code in ((unknown_query, 3), (malformed, 3), (huge, 8)):
            assert answer.headers["content-type"].startswith("application/json"), answer.text
            assert answer.json()["code"] == code and answer.json()["message"], answer.text
        forged = await http.get(f"{rest}/v1/users/me", headers={"authorization": "Bearer not.a.token"})
        assert forged.status_code == 401


async def test_a_server_stream_arrives_as_newline_delimited_json(rest: str) -> None:
    async with httpx.AsyncClient() as http:
        auth = await _signed_in(http, rest)
        request = {
            "model": "builtin/echo",
            "messages": [{"role": "MESSAGE_ROLE_USER", "content": "one two three"}],
            "options": {"tokensPerSecond": 0},
        }
        async with http.stream("POST", f"{rest}/v1/ai:generate", json=request, headers=auth) as answer:
            assert answer.status_code == 200
            lines = [json.loads(line) async for line in answer.aiter_lines() if line.strip()]
        assert "".join(piece["text"] for piece in lines).split() == ["one", "two", "three"]
        assert lines[-1]["finishReason"] == "FINISH_REASON_STOP" and str(lines[-1]["usage"]["completionTokens"]) == "3"


async def test_an_upload_session_and_its_parts_over_rest(rest: str, tmp_path: Path) -> None:
    data = b"hello over REST\n" * 1000
    async with httpx.AsyncClient() as http:
        auth = await _signed_in(http, rest)
        metadata = {
            "filename": "notes.txt",
            "contentType": "text/plain",
            "sizeBytes": str(len(data)),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        session = (await http.post(f"{rest}/v1/uploads", json={"metadata": metadata}, headers=auth)).json()["session"]
        half = len(data) // 2
        for offset, piece in ((0, data[:half]), (half, data[half:])):
            part = await http.post(
                f"{rest}/v1/uploads/{session['id']}/parts",
                json={"offset": str(offset), "data": base64.b64encode(piece).decode()},
                headers=auth,
            )
            assert part.status_code == 200, part.text
        done = await http.post(f"{rest}/v1/uploads/{session['id']}:complete", json={}, headers=auth)
        assert done.status_code == 200, done.text
        stored = done.json()["file"]
        got = await http.get(f"{rest}/v1/files/{stored['id']}", headers=auth)
        assert got.json()["file"]["sizeBytes"] == str(len(data))
        async with http.stream("GET", f"{rest}/v1/files/{stored['id']}:download", headers=auth) as answer:
            pieces = [json.loads(line) async for line in answer.aiter_lines() if line.strip()]
        body = b"".join(base64.b64decode(p["chunk"]) for p in pieces if "chunk" in p)
        assert body == data and pieces[0]["file"]["filename"] == "notes.txt"


def _annotated() -> dict[str, str]:
    """Every REST path template the contracts declare, with its method (from the generated descriptors)."""
    from google.api import annotations_pb2
    from google.protobuf import descriptor_pool

    from pynode.app import modules

    found = {}
    for module in modules.MODULES:
        for name in module.service_names:
            for method in descriptor_pool.Default().FindServiceByName(name).methods:
                rule = method.GetOptions().Extensions[annotations_pb2.http]
                pattern = rule.WhichOneof("pattern")
                if pattern:
                    found[getattr(rule, pattern)] = pattern
    return found


def test_the_openapi_description_is_valid_and_covers_every_annotated_route() -> None:
    from openapi_spec_validator import validate

    root = Path(__file__).resolve().parents[2]
    document = json.loads((root / "gateway" / "openapi.json").read_text())
    validate(document)
    assert (root / "web" / "public" / "openapi.json").read_text() == (root / "gateway" / "openapi.json").read_text()
    routes = _annotated()
    assert len(routes) > 30
    for path, verb in routes.items():
        assert verb in document["paths"].get(path, {}), f"{verb.upper()} {path} is not described"


async def test_embeddings_and_a_forced_tool_call_over_rest(rest: str) -> None:
    async with httpx.AsyncClient() as http:
        auth = await _signed_in(http, rest)
        embedded = await http.post(
            f"{rest}/v1/ai:embed", json={"model": "builtin/echo", "inputs": ["red apple", "blue sky"]}, headers=auth
        )
        assert embedded.status_code == 200, embedded.text
        vectors = [e["values"] for e in embedded.json()["embeddings"]]
        assert len(vectors) == 2 and {len(v) for v in vectors} == {64}
        request = {
            "model": "builtin/echo",
            "messages": [{"role": "MESSAGE_ROLE_USER", "content": "Paris"}],
            "tools": [{"name": "get_weather", "parametersJson": '{"type":"object"}'}],
            "toolChoice": {"mode": "TOOL_CHOICE_MODE_REQUIRED"},
        }
        async with http.stream("POST", f"{rest}/v1/ai:generate", json=request, headers=auth) as answer:
            lines = [json.loads(line) async for line in answer.aiter_lines() if line.strip()]
        arguments = "".join(d.get("argumentsJson", "") for line in lines for d in line.get("toolCalls", []))
        assert json.loads(arguments) == {"text": "Paris"}
        assert lines[-1]["finishReason"] == "FINISH_REASON_TOOL_CALLS"

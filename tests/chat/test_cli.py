"""`devpynode chat`: scripted from standard input; reopening attaches to a running answer; `chat ls`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from devpynode.chat.v1 import chat_pb2

from tests.ai.fakes import FakeProvider
from tests.chat.conftest import ANSWER, WORDS, Start
from tests.client import PASSWORD, run_cli_here
from tests.conftest import one_backend

pytestmark = one_backend  # a command-line client is a gRPC client: see tests/conftest.py


async def test_chat_from_the_command_line(chat: Start, ollama: FakeProvider, tmp_path: Path) -> None:
    (alice,) = await chat(1)
    env = {"DEVPYNODE_SERVER": f"127.0.0.1:{alice.mesh.port}", "DEVPYNODE_CONFIG_DIR": str(tmp_path / "config")}
    code, _, err = await run_cli_here(
        "login", "--email", alice.email, "--password-stdin", env=env, stdin=PASSWORD.encode()
    )
    assert code == 0, err
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nbring snacks\n")
    script = f"hello there model\n/attach {notes}\nwhat do the notes say\n/model builtin/echo\necho these words\n"
    code, out, err = await run_cli_here(
        "chat", "--new", "--model", "ollama/llama3.2:latest", "--title", "From the CLI", env=env, stdin=script.encode()
    )
    assert code == 0, err
    assert out.count(ANSWER) == 2 and "echo these words" in out, out
    assert "notes.md will be attached" in err and "answers now come from builtin/echo" in err
    body = ollama.chats[-1].body
    assert body is not None and "bring snacks" in body["messages"][-1]["content"]

    code, out, err = await run_cli_here("chat", "ls", env=env)
    assert code == 0 and "From the CLI\tbuiltin/echo\t1" in out, err
    conversation_id = out.splitlines()[1].split("\t")[0]

    # An answer still being written when the conversation is opened again: the CLI attaches to it.
    ollama.script.delay = 0.05
    call = alice.send_call(conversation_id, "x")  # the model is builtin/echo now: switch back
    async for _ in call:
        break
    call.cancel()
    await alice.stub.UpdateConversation(
        chat_pb2.UpdateConversationRequest(conversation_id=conversation_id, model="ollama/llama3.2:latest"),
        metadata=alice.md,
    )
    started = alice.send_call(conversation_id, "a slow one")
    async for response in started:
        if response.WhichOneof("event") == "delta":
            break
    started.cancel()
    code, out, err = await run_cli_here("chat", "-c", conversation_id, env=env, stdin=b"")
    assert code == 0, err
    assert out.rstrip().endswith(ANSWER), out
    await asyncio.sleep(0)

    code, _, err = await run_cli_here("chat", "-c", "6f1c1bc4-8a0e-4c38-9a52-2f1a1b1b1b1b", env=env)
    assert code != 0 and "no conversation" in err and "Traceback" not in err


async def test_ctrl_c_cancels_the_running_answer(chat: Start, ollama: FakeProvider, tmp_path: Path) -> None:
    """The answer streams; Ctrl-C (SIGINT) stops it, its text so far kept; the conversation goes on."""
    import os
    import signal
    import sys

    (alice,) = await chat(1)
    env = {
        **os.environ,
        "DEVPYNODE_SERVER": f"127.0.0.1:{alice.mesh.port}",
        "DEVPYNODE_CONFIG_DIR": str(tmp_path / "config"),
        "DEVPYNODE_BCRYPT_COST": "4",
    }
    code, _, err = await run_cli_here(
        "login", "--email", alice.email, "--password-stdin", env=env, stdin=PASSWORD.encode()
    )
    assert code == 0, err
    conversation = await alice.create()
    # An answer that cannot finish before the interrupt, however loaded the machine: 400 tokens, 0.3 s apart.
    ollama.script.tokens, ollama.script.delay = [f" w{i}" for i in range(400)], 0.3
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pynode.app.cli", "chat", "-c", conversation.id, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(b"tell me a long story\n")
        await process.stdin.drain()
        streamed = b""
        while b" w1" not in streamed:  # the answer is streaming
            streamed += await asyncio.wait_for(process.stdout.read(64), 20)
        process.send_signal(signal.SIGINT)

        async def cancelled() -> chat_pb2.Message:
            while True:
                newest = (await alice.messages(conversation.id))[0]
                if newest.state != chat_pb2.MESSAGE_STATE_STREAMING:
                    return newest
                await asyncio.sleep(0.05)

        reply = await asyncio.wait_for(cancelled(), 20)
        assert reply.state == chat_pb2.MESSAGE_STATE_CANCELLED and reply.text.startswith(" w0")
        ollama.script.tokens, ollama.script.delay = WORDS, 0.0  # the next answer comes at once
        process.stdin.write(b"and now?\n")  # the conversation goes on after the cancel
        process.stdin.close()
        _, err_bytes = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err_bytes.decode()
        assert b"(cancelled)" in err_bytes
        assert len(await alice.messages(conversation.id)) == 4
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_tool_calls_and_results_in_the_chat_command(chat: Start, ollama: FakeProvider, tmp_path: Path) -> None:
    (alice,) = await chat(1)
    env = {"DEVPYNODE_SERVER": f"127.0.0.1:{alice.mesh.port}", "DEVPYNODE_CONFIG_DIR": str(tmp_path / "config")}
    code, _, err = await run_cli_here(
        "login", "--email", alice.email, "--password-stdin", env=env, stdin=PASSWORD.encode()
    )
    assert code == 0, err
    tools = tmp_path / "tools.json"
    tools.write_text('[{"name": "get_weather", "parameters": {"type": "object"}}]')
    ollama.script.tool_calls = [{"id": "x", "name": "get_weather", "arguments": '{"city": "Paris"}'}]
    conversation = await alice.create()
    script = f"/tools {tools}\nweather in Paris?\n"
    code, out, err = await run_cli_here("chat", "-c", conversation.id, env=env, stdin=script.encode())
    assert code == 0, err
    assert "the model may call get_weather" in err
    line = next(x for x in out.splitlines() if x.startswith("-> "))
    assert line.startswith('-> get_weather({"city":"Paris"})  [call call_'), out  # Ollama's object, as JSON
    call_id = line.rsplit("[call ", 1)[1].rstrip("]")
    ollama.script.tool_calls = []
    code, out, err = await run_cli_here(
        "chat", "-c", conversation.id, env=env, stdin=f'/result {call_id} {{"sky": "sunny"}}\n'.encode()
    )
    assert code == 0, err
    assert out.rstrip().endswith(ANSWER), out
    assert f'<- {call_id}: {{"sky": "sunny"}}' in out  # the history shows the result posted
    prompt = (ollama.chats[-1].body or {})["messages"]
    assert [m["role"] for m in prompt] == ["user", "assistant", "tool"]

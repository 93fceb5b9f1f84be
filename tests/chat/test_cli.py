"""`devpynode chat`: scripted from standard input; reopening attaches to a running answer; `chat ls`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from devpynode.chat.v1 import chat_pb2

from tests.ai.fakes import FakeProvider
from tests.chat.conftest import ANSWER, Start
from tests.client import PASSWORD, run_cli


async def test_chat_from_the_command_line(chat: Start, ollama: FakeProvider, tmp_path: Path) -> None:
    (alice,) = await chat(1)
    env = {"DEVPYNODE_SERVER": f"127.0.0.1:{alice.mesh.port}", "DEVPYNODE_CONFIG_DIR": str(tmp_path / "config")}
    code, _, err = await run_cli("login", "--email", alice.email, "--password-stdin", env=env, stdin=PASSWORD.encode())
    assert code == 0, err
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nbring snacks\n")
    script = f"hello there model\n/attach {notes}\nwhat do the notes say\n/model builtin/echo\necho these words\n"
    code, out, err = await run_cli(
        "chat", "--new", "--model", "ollama/llama3.2:latest", "--title", "From the CLI", env=env, stdin=script.encode()
    )
    assert code == 0, err
    assert out.count(ANSWER) == 2 and "echo these words" in out, out
    assert "notes.md will be attached" in err and "answers now come from builtin/echo" in err
    body = ollama.chats[-1].body
    assert body is not None and "bring snacks" in body["messages"][-1]["content"]

    code, out, err = await run_cli("chat", "ls", env=env)
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
    code, out, err = await run_cli("chat", "-c", conversation_id, env=env, stdin=b"")
    assert code == 0, err
    assert out.rstrip().endswith(ANSWER), out
    await asyncio.sleep(0)

    code, _, err = await run_cli("chat", "-c", "6f1c1bc4-8a0e-4c38-9a52-2f1a1b1b1b1b", env=env)
    assert code != 0 and "no conversation" in err and "Traceback" not in err

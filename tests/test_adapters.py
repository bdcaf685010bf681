"""The adapter registry: register, verify, activate, roll back, across processes."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from mongars_core.adapters import AdapterNotFoundError, AdapterRegistry, erase_user
from mongars_core.errors import InvalidInputError
from tests.conftest import run_mongars


def adapter_dir(tmp_path: Path, name: str, weights: bytes) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"r": 8}')
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def test_register_activate_and_roll_back(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    first = registry.register(
        adapter_dir(tmp_path, "v1", b"one"), name="alice-style", version="1", base_model="smollm2"
    )
    assert first.files == ["adapter_config.json", "adapter_model.safetensors"]
    assert len(first.sha256) == 64
    second = registry.register(
        adapter_dir(tmp_path, "v2", b"two"), name="alice-style", version="2", base_model="smollm2"
    )
    assert first.sha256 != second.sha256
    assert registry.active("alice-style") is None

    registry.activate("alice-style", "1")
    registry.activate("alice-style", "2")
    assert registry.active("alice-style").version == "2"  # type: ignore[union-attr]
    rolled = registry.rollback("alice-style")
    assert rolled is not None and rolled.version == "1"
    assert registry.rollback("alice-style") is None
    assert registry.active("alice-style") is None
    with pytest.raises(AdapterNotFoundError):
        registry.rollback("alice-style")

    manifest = json.loads((tmp_path / "adapters" / "manifest.json").read_text())
    assert [(a["name"], a["version"]) for a in manifest["adapters"]] == [
        ("alice-style", "1"),
        ("alice-style", "2"),
    ]


def test_a_tampered_or_unknown_adapter_is_refused(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    adapter = registry.register(
        adapter_dir(tmp_path, "v1", b"weights"), name="a", version="1", base_model="m"
    )
    (Path(adapter.path) / "adapter_model.safetensors").write_bytes(b"tampered")
    with pytest.raises(InvalidInputError, match="checksum"):
        registry.activate("a", "1")
    with pytest.raises(AdapterNotFoundError):
        registry.activate("a", "9")
    with pytest.raises(InvalidInputError, match="already registered"):
        registry.register(tmp_path / "v1", name="a", version="1", base_model="m")
    with pytest.raises(InvalidInputError, match="invalid adapter name"):
        registry.register(tmp_path / "v1", name="../escape", version="2", base_model="m")
    single = tmp_path / "lora.bin"
    single.write_bytes(b"file")
    assert registry.register(single, name="a", version="2", base_model="m").files == ["lora.bin"]


def test_a_failed_change_leaves_the_manifest_as_it_was(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    registry.register(adapter_dir(tmp_path, "v1", b"one"), name="a", version="1", base_model="m")
    before = registry.manifest_path.read_bytes()
    with pytest.raises(RuntimeError), registry._locked() as manifest:
        manifest.active["a"] = "1"
        raise RuntimeError("crash in the middle of a change")
    assert registry.manifest_path.read_bytes() == before
    assert [p.name for p in registry.root.iterdir() if p.name.startswith(".manifest-")] == []


def _register_many(root: str, worker: int) -> None:
    registry = AdapterRegistry(Path(root))
    source = Path(root).parent / f"src{worker}"
    source.mkdir()
    (source / "w.bin").write_bytes(str(worker).encode())
    for index in range(5):
        registry.register(source, name=f"w{worker}", version=str(index), base_model="m")


def test_processes_registering_at_once_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "adapters"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_register_many, args=(str(root), n)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert len(AdapterRegistry(root).adapters()) == 20


def test_the_cli(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    env["MONGARS_DATA_DIR"] = str(tmp_path / "data")
    source = adapter_dir(tmp_path, "v1", b"one")
    registered = run_mongars(
        "adapters", "register", str(source), "--name", "a", "--version", "1",
        "--base-model", "smollm2", env=env,
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    assert run_mongars("adapters", "activate", "a", "1", env=env).returncode == 0
    listed = run_mongars("adapters", "list", "--json", env=env)
    assert json.loads(listed.stdout)[0]["version"] == "1"
    rolled = run_mongars("adapters", "rollback", "a", env=env)
    assert "none is active" in rolled.stdout
    missing = run_mongars("adapters", "activate", "a", "7", env=env)
    assert missing.returncode == 1
    assert "no adapter 'a' version '7'" in missing.stderr


def test_a_user_gets_the_active_version_of_the_adapter_assigned_to_them(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    for version in ("1", "2"):
        registry.register(
            adapter_dir(tmp_path, f"v{version}", version.encode()),
            name="style",
            version=version,
            base_model="smollm2",
        )
    assert registry.for_user("alice") is None
    with pytest.raises(AdapterNotFoundError, match="no adapter 'other' is registered"):
        registry.assign("alice", "other")
    with pytest.raises(InvalidInputError, match="user id"):
        registry.assign("", "style")

    registry.assign("alice", "style")
    assert registry.users() == {"alice": "style"}
    assert registry.for_user("alice") is None  # assigned, but no version is active yet
    registry.activate("style", "1")
    first = registry.for_user("alice")
    assert first is not None and first.version == "1"
    registry.activate("style", "2")
    second = registry.for_user("alice")
    assert second is not None and second.version == "2"  # follows the active version
    registry.rollback("style")
    assert registry.for_user("alice").version == "1"  # type: ignore[union-attr]
    assert registry.for_user("bob") is None

    ref = second.ref()
    assert (ref.id, ref.path, ref.base_model, ref.sha256) == (
        "style@2",
        second.path,
        "smollm2",
        second.sha256,
    )
    assert registry.unassign("alice") is True
    assert registry.unassign("alice") is False
    assert registry.for_user("alice") is None
    manifest = json.loads(registry.manifest_path.read_text())
    assert manifest["users"] == {}


def test_reading_for_a_turn_parses_the_manifest_only_when_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    registry.register(adapter_dir(tmp_path, "v1", b"one"), name="a", version="1", base_model="m")
    registry.activate("a", "1")
    registry.assign("alice", "a")
    parses = 0
    parse = registry._parse

    def counting_parse() -> object:
        nonlocal parses
        parses += 1
        return parse()

    monkeypatch.setattr(registry, "_parse", counting_parse)
    for _ in range(50):
        assert registry.for_user("alice") is not None
    assert parses == 1

    # Another process (another registry object) changes the manifest: the next read sees it.
    AdapterRegistry(registry.root).unassign("alice")
    assert registry.for_user("alice") is None
    assert parses == 2


def test_the_cli_assigns_users(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    env["MONGARS_DATA_DIR"] = str(tmp_path / "data")
    source = adapter_dir(tmp_path, "v1", b"one")
    run_mongars(
        "adapters", "register", str(source), "--name", "a", "--version", "1",
        "--base-model", "smollm2", env=env,
    )  # fmt: skip
    assigned = run_mongars("adapters", "assign", "a", "--user", "alice", env=env)
    assert assigned.returncode == 0, assigned.stderr
    assert "no version is active yet" in assigned.stdout
    assert run_mongars("adapters", "activate", "a", "1", env=env).returncode == 0
    listed = run_mongars("adapters", "list", "--json", env=env)
    assert json.loads(listed.stdout)[0]["users"] == ["alice"]
    table = run_mongars("adapters", "list", env=env)
    assert "alice" in table.stdout
    missing = run_mongars("adapters", "assign", "nope", "--user", "bob", env=env)
    assert missing.returncode == 1
    assert "no adapter 'nope' is registered" in missing.stderr
    unassigned = run_mongars("adapters", "unassign", "--user", "alice", env=env)
    assert "alice: base model" in unassigned.stdout
    again = run_mongars("adapters", "unassign", "--user", "alice", env=env)
    assert "alice had no adapter" in again.stdout
    assert json.loads(run_mongars("adapters", "list", "--json", env=env).stdout)[0]["users"] == []


def test_rolling_a_user_back_past_a_learned_adapter_returns_the_one_they_had(
    tmp_path: Path,
) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    registry.register(adapter_dir(tmp_path, "c", b"c"), name="custom", version="1", base_model="m")
    registry.activate("custom", "1")
    registry.assign("u1", "custom")
    registry.register(
        adapter_dir(tmp_path, "l", b"l"), name="learned-x", version="r1", base_model="m", owner="u1"
    )
    registry.activate("learned-x", "r1")
    registry.assign("u1", "learned-x")  # what approving a learned run does
    back = registry.rollback_user("u1")
    assert back is not None and (back.name, back.version) == ("custom", "1")
    assert registry.for_user("u1").name == "custom"  # type: ignore[union-attr]
    with pytest.raises(AdapterNotFoundError):
        registry.rollback_user("nobody")


def test_forgetting_a_user_erases_the_adapters_trained_on_their_data(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    theirs = registry.register(
        adapter_dir(tmp_path, "a", b"a"), name="learned-a", version="r1", base_model="m", owner="u1"
    )
    other = registry.register(
        adapter_dir(tmp_path, "b", b"b"), name="learned-b", version="r1", base_model="m", owner="u2"
    )
    registry.activate("learned-a", "r1")
    registry.assign("u1", "learned-a")
    cache = tmp_path / "cache"
    (cache / "adapters").mkdir(parents=True)
    (cache / "adapters" / f"{theirs.sha256}.gguf").write_bytes(b"converted")
    assert erase_user(registry, cache, "u1") == 1
    assert registry.for_user("u1") is None and registry.active("learned-a") is None
    assert [a.name for a in registry.adapters()] == ["learned-b"]
    assert not Path(theirs.path).exists() and Path(other.path).exists()
    assert not (cache / "adapters" / f"{theirs.sha256}.gguf").exists()


def test_a_damaged_manifest_is_one_clear_line(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    registry.root.mkdir(parents=True)
    registry.manifest_path.write_text('{"adapters": [')
    with pytest.raises(InvalidInputError, match=r"the adapter manifest .* is damaged") as caught:
        registry.for_user("u1")
    assert "\n" not in str(caught.value)


def test_a_copy_that_fails_leaves_nothing_registered(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    source = adapter_dir(tmp_path, "s", b"s")
    registry.root.mkdir(parents=True)
    (registry.root / "x").write_text("a file where the adapter's folder goes")
    with pytest.raises(InvalidInputError, match="cannot copy adapter x 1"):
        registry.register(source, name="x", version="1", base_model="m")
    assert registry.adapters() == []


def test_rolling_back_from_a_shared_adapter_leaves_it_for_everyone_else(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    registry.register(adapter_dir(tmp_path, "h", b"h"), name="house", version="1", base_model="m")
    registry.activate("house", "1")
    registry.assign("u1", "house")
    registry.assign("u2", "house")
    registry.register(
        adapter_dir(tmp_path, "l", b"l"), name="learned-1", version="r1", base_model="m", owner="u1"
    )
    registry.activate("learned-1", "r1")
    registry.assign("u1", "learned-1")
    assert registry.rollback_user("u1").name == "house"  # type: ignore[union-attr]
    assert registry.rollback_user("u1") is None  # away from the shared one: to the base
    assert registry.active("house").version == "1"  # type: ignore[union-attr]
    assert registry.for_user("u2").name == "house"  # type: ignore[union-attr]


def test_forgetting_a_user_keeps_the_versions_of_others_active(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    registry.register(adapter_dir(tmp_path, "a", b"a"), name="n", version="1", base_model="m")
    registry.register(
        adapter_dir(tmp_path, "b", b"b"), name="n", version="2", base_model="m", owner="u1"
    )
    registry.activate("n", "1")
    registry.activate("n", "2")
    registry.forget_user("u1")
    assert registry.active("n").version == "1"  # type: ignore[union-attr]
    assert registry.rollback("n") is None  # no history left pointing at the erased one


def test_a_damaged_manifest_never_shows_a_user_id(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    registry.root.mkdir(parents=True)
    registry.manifest_path.write_text('{"users": {"acct-secret-id": 5}}')
    with pytest.raises(InvalidInputError, match=r"damaged \(users:") as caught:
        registry.for_user("acct-secret-id")
    assert "acct-secret-id" not in str(caught.value)

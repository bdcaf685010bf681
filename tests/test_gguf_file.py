"""The shared GGUF header reader: the bundled model, damaged files, and gguf's own writer."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest

from mongars_core.errors import CorruptModelError
from mongars_core.settings import Settings
from mongars_plugins.gguf_file import read_gguf
from mongars_plugins.model_store import ensure_bundled_gguf, read_gguf_metadata
from tests.conftest import MODEL_CACHE

gguf = pytest.importorskip("gguf", reason="needs the gguf package (mongars-assistant[local])")


@pytest.fixture(scope="module")
def bundled_gguf() -> Path:
    return ensure_bundled_gguf(Settings(cache_dir=MODEL_CACHE))


def write_tiny(path: Path, *, alignment: int | None = None) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    writer.add_uint8("test.u8", 200)
    writer.add_int16("test.i16", -300)
    writer.add_uint32("llama.context_length", 4096)
    writer.add_int64("test.i64", -(1 << 40))
    writer.add_uint64("test.u64", 1 << 60)
    writer.add_float32("test.f32", 0.5)
    writer.add_float64("test.f64", 1e-300)
    writer.add_bool("test.flag", True)
    writer.add_string("tokenizer.chat_template", "{{ messages }} é ✓")
    writer.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])
    writer.add_array("test.nested", [[1, 2], [3]])
    writer.add_tensor("a.weight", np.zeros((3, 5), dtype=np.float32))
    writer.add_tensor("b.weight", np.ones((7,), dtype=np.float16))
    writer.add_tensor("c.weight", np.zeros((2, 3, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_bundled_gguf_is_read_in_milliseconds(bundled_gguf: Path) -> None:
    started = time.perf_counter()
    model = read_gguf(bundled_gguf)
    elapsed = time.perf_counter() - started
    assert elapsed < 2, f"reading the header took {elapsed:.2f} s"  # ~20 ms; GGUFReader: 2.5-8 s
    assert (model.version, model.alignment, model.architecture) == (3, 32, "llama")
    assert model.number("context_length") == 8192
    assert "im_start" in model.metadata["tokenizer.chat_template"]
    assert "tokenizer.ggml.tokens" not in model.metadata  # arrays are skipped
    assert len(model.tensors) == 272
    assert model.shapes["token_embd.weight"] == (576, 49152)
    last = max(model.tensors, key=lambda tensor: tensor.offset)
    assert last.offset + last.size == bundled_gguf.stat().st_size
    # The model store reads it the same way (gguf.GGUFReader took seconds).
    started = time.perf_counter()
    metadata = read_gguf_metadata(bundled_gguf)
    assert time.perf_counter() - started < 2
    assert metadata["architecture"] == "llama"
    assert metadata["context_length"] == 8192
    assert metadata["chat_template"] == model.metadata["tokenizer.chat_template"]
    assert metadata["type"] == "model"


def test_a_truncated_bundled_gguf_is_corrupt_wherever_it_is_cut(
    bundled_gguf: Path, tmp_path: Path
) -> None:
    model = read_gguf(bundled_gguf)
    whole = bundled_gguf.read_bytes()
    last = max(model.tensors, key=lambda tensor: tensor.offset)
    cuts = {
        10: "truncated GGUF file",  # the fixed header
        5_000: "damaged or truncated GGUF file",  # the metadata (the vocabulary)
        model.data_offset - 100: "damaged or truncated GGUF file",  # the tensor infos
        model.data_offset + 1000: "truncated or damaged: tensor 'token_embd.weight'",
        len(whole) - 1: f"truncated or damaged: tensor '{last.name}'",
    }
    for size, message in cuts.items():
        cut = tmp_path / f"cut-{size}.gguf"
        cut.write_bytes(whole[:size])
        with pytest.raises(CorruptModelError, match=message) as caught:
            read_gguf(cut)
        assert str(cut) in str(caught.value)


def test_what_is_not_gguf_is_corrupt(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("hello " * 100)
    with pytest.raises(CorruptModelError, match=r"notes.gguf is not a GGUF file"):
        read_gguf(text)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(CorruptModelError, match="is not a GGUF file"):
        read_gguf(empty)
    with pytest.raises(CorruptModelError, match="does not exist"):
        read_gguf(tmp_path / "absent.gguf")
    tiny = write_tiny(tmp_path / "tiny.gguf").read_bytes()
    old = tmp_path / "v1.gguf"
    old.write_bytes(tiny[:4] + (1).to_bytes(4, "little") + tiny[8:])
    with pytest.raises(CorruptModelError, match=r"unsupported GGUF file \(version 1\)"):
        read_gguf(old)
    swapped = tmp_path / "big.gguf"
    swapped.write_bytes(tiny[:4] + (3).to_bytes(4, "big") + tiny[8:])
    with pytest.raises(CorruptModelError, match="big-endian"):
        read_gguf(swapped)


@pytest.mark.parametrize("alignment", [None, 64])
def test_a_file_written_by_gguf_reads_back(tmp_path: Path, alignment: int | None) -> None:
    path = write_tiny(tmp_path / "tiny.gguf", alignment=alignment)
    model = read_gguf(path)
    assert model.version == 3
    assert model.alignment == (alignment or 32)
    expected = {
        "general.architecture": "llama",
        "test.u8": 200,
        "test.i16": -300,
        "llama.context_length": 4096,
        "test.i64": -(1 << 40),
        "test.u64": 1 << 60,
        "test.f32": 0.5,
        "test.f64": 1e-300,
        "test.flag": True,
        "tokenizer.chat_template": "{{ messages }} é ✓",
    }
    assert {key: model.metadata[key] for key in expected} == expected
    assert "tokenizer.ggml.tokens" not in model.metadata
    assert "test.nested" not in model.metadata
    reader = gguf.GGUFReader(str(path))
    assert [(t.name, t.shape, t.type, t.offset, t.size) for t in model.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), int(t.tensor_type), t.data_offset, t.n_bytes)
        for t in reader.tensors
    ]
    assert all(tensor.offset % model.alignment == 0 for tensor in model.tensors)
    first, last = model.tensors[0], model.tensors[-1]
    assert first.offset == model.data_offset
    assert model.data_offset + model.data_bytes == last.offset + last.size


def _string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def _header(n_tensors: int, n_kv: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv)


def test_deeply_nested_arrays_are_corrupt_not_a_recursion_error(tmp_path: Path) -> None:
    depth = 5000  # 60 KB: each level is 12 bytes (element type ARRAY, one element)
    body = _string(b"k") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * depth
    nested = tmp_path / "nested.gguf"
    nested.write_bytes(_header(0, 1) + body + struct.pack("<IQ", 0, 0) + b"\0" * 64)
    with pytest.raises(CorruptModelError, match="arrays nested deeper than"):
        read_gguf(nested)
    with pytest.raises(CorruptModelError, match="arrays nested deeper than"):
        read_gguf_metadata(nested)


def test_counts_the_file_cannot_hold_are_refused_before_reading_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mongars_plugins import gguf_file

    def no_entry_read(self: object) -> str:
        raise AssertionError("an entry was read before the counts were checked")

    monkeypatch.setattr(gguf_file._Parser, "string", no_entry_read)
    # Each tensor entry takes at least 24 bytes and each metadata entry 13.
    cases = {
        "lying-tensors.gguf": (_header(1_000_000, 0) + b"\0" * 4096, "1000000 tensors"),
        "huge-tensors.gguf": (_header(1 << 62, 0) + b"\0" * 64, f"{1 << 62} tensors"),
        "lying-kv.gguf": (_header(0, 100_000) + b"\0" * 4096, "100000 metadata entries"),
    }
    for name, (content, count) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        started = time.perf_counter()
        with pytest.raises(CorruptModelError, match=f"declares .*{count}.*more than its"):
            read_gguf(path)
        assert time.perf_counter() - started < 1


def test_duplicate_tensor_names_are_refused_at_the_first_duplicate(tmp_path: Path) -> None:
    n = 200_000  # the attack had a million: 24 MB, 30 s and 240 MB before
    entries = struct.pack("<QIIQ", 0, 0, 0, 0) * n  # empty name, no dimension, F32
    path = tmp_path / "many.gguf"
    path.write_bytes(_header(n, 0) + entries + b"\0" * 64)
    started = time.perf_counter()
    with pytest.raises(CorruptModelError, match="tensor '' appears twice"):
        read_gguf(path)
    assert time.perf_counter() - started < 1


def test_duplicate_metadata_keys_are_refused(tmp_path: Path) -> None:
    entry = _string(b"general.architecture") + struct.pack("<I", 8) + _string(b"llama")
    path = tmp_path / "twice.gguf"
    path.write_bytes(_header(0, 2) + entry * 2 + b"\0" * 64)
    with pytest.raises(CorruptModelError, match=r"'general\.architecture' appears twice"):
        read_gguf(path)


def test_array_and_string_lengths_are_bounded_by_the_file(tmp_path: Path) -> None:
    key = _string(b"tokenizer.ggml.tokens") + struct.pack("<I", 9)
    cases = {
        # a billion strings in a few bytes: refused before looping over them
        "strings": key + struct.pack("<IQ", 8, 1 << 30) + _string(b"a"),
        # a string whose length runs past the end of the file
        "long-string": key + struct.pack("<IQ", 8, 2) + struct.pack("<Q", 1 << 40),
        "arrays": key + struct.pack("<IQ", 9, 1 << 40),
    }
    for name, body in cases.items():
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(_header(0, 1) + body + b"\0" * 64)
        started = time.perf_counter()
        with pytest.raises(CorruptModelError, match="past the end of the file"):
            read_gguf(path)
        assert time.perf_counter() - started < 1, name

"""peft LoRA adapters converted to GGUF LoRA for llama.cpp: names, shapes, the query/key
row order, refusals, the cache; then (``model``) an adapter peft makes on the bundled
model, applied through llama.cpp to one user's turns and no one else's."""

from __future__ import annotations

import asyncio
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="needs the gguf package (mongars-assistant[local])")

from mongars_core.adapters import files_checksum  # noqa: E402
from mongars_core.errors import CorruptModelError, InvalidInputError  # noqa: E402
from mongars_core.types import AdapterRef  # noqa: E402
from mongars_plugins.gguf_file import read_gguf  # noqa: E402
from mongars_plugins.llamacpp.lora import (  # noqa: E402
    convert_peft_adapter,
    converted_adapter,
    read_base_model,
    read_safetensors,
)

HIDDEN, HEADS, KV_HEADS, FFN, LAYERS, RANK = 16, 2, 1, 24, 2, 2
HEAD_DIM = HIDDEN // HEADS
PREFIX = "base_model.model.model.layers"
# peft module -> (its folder in the HF model, out, in)
SHAPES = {
    "q_proj": ("self_attn", HIDDEN, HIDDEN),
    "k_proj": ("self_attn", KV_HEADS * HEAD_DIM, HIDDEN),
    "v_proj": ("self_attn", KV_HEADS * HEAD_DIM, HIDDEN),
    "o_proj": ("self_attn", HIDDEN, HIDDEN),
    "gate_proj": ("mlp", FFN, HIDDEN),
    "up_proj": ("mlp", FFN, HIDDEN),
    "down_proj": ("mlp", HIDDEN, FFN),
}
GGUF_NAMES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}


def write_base(
    path: Path, *, hidden: int = HIDDEN, layers: int = LAYERS, arch: str = "llama"
) -> Path:
    """A tiny GGUF "model": the metadata and projection tensors a conversion reads."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_uint32(f"{arch}.attention.head_count", HEADS)
    writer.add_uint32(f"{arch}.attention.head_count_kv", KV_HEADS)
    writer.add_uint32(f"{arch}.block_count", layers)
    writer.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])  # arrays are skipped
    scale = hidden / HIDDEN
    for layer in range(layers):
        for module, (_, n_out, n_in) in SHAPES.items():
            shape = (int(n_out * scale), int(n_in * scale))
            writer.add_tensor(
                f"blk.{layer}.{GGUF_NAMES[module]}.weight", np.zeros(shape, dtype=np.float32)
            )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def save_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str = "F32") -> None:
    """A safetensors file written by hand (bf16 too, which numpy has no type for)."""
    header: dict[str, Any] = {}
    blobs: list[bytes] = []
    offset = 0
    for name, array in tensors.items():
        if dtype == "BF16":
            blob = (array.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            blob = array.astype("<f4").tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        offset += len(blob)
        blobs.append(blob)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def peft_adapter(
    folder: Path,
    *,
    modules: tuple[str, ...] = tuple(SHAPES),
    layers: int = LAYERS,
    config: dict[str, Any] | None = None,
    dtype: str = "F32",
    hidden: int = HIDDEN,
    seed: int = 0,
) -> tuple[Path, dict[str, np.ndarray]]:
    """A folder laid out as peft saves a LoRA adapter, with random A and B."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    scale = hidden / HIDDEN
    for layer in range(layers):
        for module in modules:
            where, n_out, n_in = SHAPES[module]
            stem = f"{PREFIX}.{layer}.{where}.{module}"
            tensors[f"{stem}.lora_A.weight"] = rng.standard_normal((RANK, int(n_in * scale)))
            tensors[f"{stem}.lora_B.weight"] = rng.standard_normal((int(n_out * scale), RANK))
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "peft_type": "LORA",
        "r": RANK,
        "lora_alpha": 4,
        "target_modules": list(modules),
        "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "bias": "none",
        "use_dora": False,
        "use_rslora": False,
        "modules_to_save": None,
        **(config or {}),
    }
    (folder / "adapter_config.json").write_text(json.dumps(settings))
    save_safetensors(folder / "adapter_model.safetensors", tensors, dtype)
    return folder, tensors


def reader_tensors(path: Path) -> dict[str, np.ndarray]:
    return {t.name: np.array(t.data) for t in gguf.GGUFReader(str(path)).tensors}


def test_a_peft_adapter_becomes_a_gguf_lora_with_llama_cpp_names(tmp_path: Path) -> None:
    base = write_base(tmp_path / "base.gguf")
    folder, tensors = peft_adapter(tmp_path / "adapter")
    out = convert_peft_adapter(folder, tmp_path / "out" / "lora.gguf", base_gguf=base)

    reader = gguf.GGUFReader(str(out))
    fields = {name: reader.fields[name].contents() for name in reader.fields}
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == 4.0
    assert fields["general.architecture"] == "llama"
    written = reader_tensors(out)
    assert len(written) == 2 * LAYERS * len(SHAPES)
    for layer in range(LAYERS):
        for module, (where, n_out, n_in) in SHAPES.items():
            name = f"blk.{layer}.{GGUF_NAMES[module]}.weight"
            a = written[f"{name}.lora_a"]
            b = written[f"{name}.lora_b"]
            assert a.shape == (RANK, n_in) and b.shape == (n_out, RANK)
            stem = f"{PREFIX}.{layer}.{where}.{module}"
            np.testing.assert_allclose(a, tensors[f"{stem}.lora_A.weight"], rtol=1e-6)
            if module not in ("q_proj", "k_proj"):
                np.testing.assert_allclose(b, tensors[f"{stem}.lora_B.weight"], rtol=1e-6)
    assert [p.name for p in out.parent.iterdir()] == ["lora.gguf"]  # no temporary left


def hf_to_gguf_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """Row order of llama.cpp's GGUF query/key weights, from HF's: written out row by row
    (each head's first half holds the even rotary components, the second half the odd)."""
    head_dim = weight.shape[0] // heads
    order = []
    for head in range(heads):
        for pair in range(head_dim // 2):
            order += [head * head_dim + pair, head * head_dim + head_dim // 2 + pair]
    return weight[order]


def test_query_and_key_updates_get_the_row_order_of_the_gguf_base(tmp_path: Path) -> None:
    base = write_base(tmp_path / "base.gguf")
    folder, tensors = peft_adapter(tmp_path / "adapter", modules=("q_proj", "k_proj", "v_proj"))
    written = reader_tensors(convert_peft_adapter(folder, tmp_path / "l.gguf", base_gguf=base))
    for module, heads in (("q_proj", HEADS), ("k_proj", KV_HEADS)):
        stem = f"{PREFIX}.1.self_attn.{module}"
        delta_hf = tensors[f"{stem}.lora_B.weight"] @ tensors[f"{stem}.lora_A.weight"]
        gguf_name = f"blk.1.{GGUF_NAMES[module]}.weight"
        delta_gguf = written[f"{gguf_name}.lora_b"] @ written[f"{gguf_name}.lora_a"]
        # The adapter's update lands on the base's rows exactly as the converted base weight does.
        np.testing.assert_allclose(delta_gguf, hf_to_gguf_rows(delta_hf, heads), rtol=1e-5)
        assert not np.allclose(delta_gguf, delta_hf)


def test_bf16_adapters_are_read(tmp_path: Path) -> None:
    folder, tensors = peft_adapter(tmp_path / "adapter", modules=("v_proj",), dtype="BF16")
    read = read_safetensors(folder / "adapter_model.safetensors")
    for name, value in tensors.items():
        np.testing.assert_allclose(read[name], value, rtol=1e-2)
    base = write_base(tmp_path / "base.gguf")
    assert convert_peft_adapter(folder, tmp_path / "l.gguf", base_gguf=base).is_file()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"use_dora": True}, "DoRA"),
        ({"use_rslora": True}, "rank-stabilised"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"target_modules": ["q_proj", "embed_tokens"]}, r"\['embed_tokens'\] cannot be mapped"),
        ({"alpha_pattern": {"q_proj": 16}}, "alpha_pattern"),
        ({"bias": "all"}, "biases"),
        ({"peft_type": "IA3"}, "only LoRA adapters"),
    ],
)
def test_adapters_llama_cpp_cannot_apply_are_refused(
    tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    base = write_base(tmp_path / "base.gguf")
    folder, _ = peft_adapter(tmp_path / "adapter", config=config)
    with pytest.raises(InvalidInputError, match=message):
        convert_peft_adapter(folder, tmp_path / "l.gguf", base_gguf=base)
    assert not (tmp_path / "l.gguf").exists()


def test_tensors_that_map_to_nothing_are_refused(tmp_path: Path) -> None:
    base = write_base(tmp_path / "base.gguf")
    folder, tensors = peft_adapter(tmp_path / "adapter", modules=("q_proj",))
    weights = folder / "adapter_model.safetensors"
    for extra, message in (
        ("base_model.model.model.embed_tokens.lora_embedding_A", "embedding adapters"),
        (f"{PREFIX}.0.self_attn.q_proj.lora_magnitude_vector", "DoRA"),
        ("base_model.model.lm_head.lora_A.weight", "not a LoRA weight this converter maps"),
    ):
        save_safetensors(weights, {**tensors, extra: np.ones((2, 2))})
        with pytest.raises(InvalidInputError, match=message):
            convert_peft_adapter(folder, tmp_path / "l.gguf", base_gguf=base)
    del tensors[f"{PREFIX}.1.self_attn.q_proj.lora_B.weight"]
    save_safetensors(weights, tensors)
    with pytest.raises(InvalidInputError, match=r"lora_A but not both for blk.1.attn_q"):
        convert_peft_adapter(folder, tmp_path / "l.gguf", base_gguf=base)


def test_an_adapter_for_another_base_model_is_refused(tmp_path: Path) -> None:
    base = write_base(tmp_path / "base.gguf")
    wider, _ = peft_adapter(tmp_path / "wider", hidden=2 * HIDDEN)
    with pytest.raises(
        InvalidInputError, match=r"another base model: blk.0.attn_k.weight is 8x16 in the base"
    ):
        convert_peft_adapter(wider, tmp_path / "l.gguf", base_gguf=base)
    deeper, _ = peft_adapter(tmp_path / "deeper", layers=LAYERS + 1)
    with pytest.raises(InvalidInputError, match=r"the base has no tensor blk.2"):
        convert_peft_adapter(deeper, tmp_path / "l.gguf", base_gguf=base)
    folder, _ = peft_adapter(tmp_path / "adapter")
    qwen = write_base(tmp_path / "qwen.gguf", arch="qwen2")
    with pytest.raises(InvalidInputError, match="supports the llama architecture"):
        convert_peft_adapter(folder, tmp_path / "l.gguf", base_gguf=qwen)
    assert not (tmp_path / "l.gguf").exists()


def test_a_corrupt_adapter_or_base_is_refused_clearly(tmp_path: Path) -> None:
    base = write_base(tmp_path / "base.gguf")
    folder, _ = peft_adapter(tmp_path / "adapter")
    weights = folder / "adapter_model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InvalidInputError, match=r"not a readable safetensors file.*truncated"):
        convert_peft_adapter(folder, tmp_path / "l.gguf", base_gguf=base)
    weights.write_bytes(b"\xff" * 64)
    with pytest.raises(InvalidInputError, match="not a readable safetensors file"):
        convert_peft_adapter(folder, tmp_path / "l.gguf", base_gguf=base)
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match=r"cannot read .*adapter_config.json"):
        convert_peft_adapter(folder, tmp_path / "l.gguf", base_gguf=base)
    weights.unlink()
    (folder / "adapter_config.json").write_text("{}")
    with pytest.raises(InvalidInputError, match=r"no adapter_model.safetensors"):
        convert_peft_adapter(folder, tmp_path / "l.gguf", base_gguf=base)
    with pytest.raises(InvalidInputError, match="not a peft adapter"):
        convert_peft_adapter(tmp_path / "empty", tmp_path / "l.gguf", base_gguf=base)

    good, _ = peft_adapter(tmp_path / "good")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(base.read_bytes()[:200])
    with pytest.raises(CorruptModelError, match="damaged or truncated GGUF"):
        convert_peft_adapter(good, tmp_path / "l.gguf", base_gguf=broken)
    broken.write_bytes(b"not a gguf at all")
    with pytest.raises(CorruptModelError, match="not a GGUF file"):
        convert_peft_adapter(good, tmp_path / "l.gguf", base_gguf=broken)


def test_the_header_reader_agrees_with_gguf(tmp_path: Path) -> None:
    base = write_base(tmp_path / "base.gguf")
    header = read_gguf(base)
    reader = gguf.GGUFReader(str(base))
    assert header.shapes == {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
    assert header.metadata["llama.attention.head_count_kv"] == KV_HEADS
    info = read_base_model(base)
    assert (info.architecture, info.head_count, info.head_count_kv) == ("llama", HEADS, KV_HEADS)


def test_an_adapter_changed_since_it_was_registered_is_never_converted(tmp_path: Path) -> None:
    """A tampered adapter (alpha raised after approval) is refused, and nothing is cached
    under the checksum the registry vouched for."""
    base = write_base(tmp_path / "base.gguf")
    folder, _ = peft_adapter(tmp_path / "adapter")
    digest = files_checksum(folder, sorted(p.name for p in folder.iterdir()))
    ref = AdapterRef(name="a", version="1", path=str(folder), base_model="m", sha256=digest)
    config = folder / "adapter_config.json"
    config.write_text(config.read_text().replace('"lora_alpha": 4', '"lora_alpha": 4000'))
    with pytest.raises(InvalidInputError, match=r"adapter a@1: the files in .* do not match"):
        converted_adapter(ref, tmp_path / "cache", base)
    assert not (tmp_path / "cache" / "adapters" / f"{digest}.gguf").exists()


def test_a_registered_adapter_is_converted_once(tmp_path: Path) -> None:
    base = write_base(tmp_path / "base.gguf")
    folder, _ = peft_adapter(tmp_path / "adapter")
    digest = files_checksum(folder, sorted(p.name for p in folder.iterdir()))
    ref = AdapterRef(name="a", version="1", path=str(folder), base_model="m", sha256=digest)
    cache = tmp_path / "cache"
    first = converted_adapter(ref, cache, base)
    assert first == cache / "adapters" / f"{digest}.gguf"
    stamp = first.stat().st_mtime_ns
    os.utime(first, ns=(stamp - 10**9, stamp - 10**9))
    assert converted_adapter(ref, cache, base) == first
    assert first.stat().st_mtime_ns == stamp - 10**9  # not written again

    wider = write_base(tmp_path / "wider.gguf", hidden=2 * HIDDEN)
    with pytest.raises(InvalidInputError, match="adapter a@1: adapter for another base model"):
        converted_adapter(ref, cache, wider)  # the cached copy is checked too

    unnamed = ref.model_copy(update={"sha256": ""})
    assert converted_adapter(unnamed, cache, base) == first  # the same files, the same key


# -- with the bundled model (peft makes the adapter, llama.cpp applies it) ------------------


@pytest.fixture(scope="module")
def bundled_gguf() -> Path:
    import mongars_plugins.cuda  # noqa: F401  (the model store imports its settings)
    from mongars_core.settings import Settings
    from mongars_plugins.model_store import ensure_bundled_gguf
    from tests.conftest import MODEL_CACHE

    return ensure_bundled_gguf(Settings(cache_dir=MODEL_CACHE))


@pytest.fixture(scope="module")
def hf_model(bundled_gguf: Path) -> Any:
    """The bundled model in transformers (the torch backend's converted copy, cached)."""
    torch = pytest.importorskip("torch", reason="needs torch (mongars-assistant[local])")
    pytest.importorskip("peft", reason="needs peft (mongars-assistant[train])")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mongars_core.settings import Settings
    from mongars_plugins.cuda.model import ensure_model
    from tests.conftest import MODEL_CACHE

    folder = ensure_model(Settings(cache_dir=MODEL_CACHE, local={"gguf_path": str(bundled_gguf)}))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    model.eval()
    return model, AutoTokenizer.from_pretrained(str(folder))


# peft (0.21) calls a transformers method that transformers 5 deprecates.
PEFT_ON_TRANSFORMERS_5 = pytest.mark.filterwarnings(
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
)


def make_peft_adapter(
    model: Any, folder: Path, modules: list[str], magnitude: float, seed: int = 0
) -> Any:
    """A peft LoRA on ``model`` with random B (peft starts B at zero: no effect), saved."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # peft draws A from the global generator
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=modules))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * magnitude)
    peft_model.eval()
    peft_model.save_pretrained(str(folder))
    return peft_model


@pytest.mark.model
@PEFT_ON_TRANSFORMERS_5
def test_llama_cpp_applies_the_converted_adapter_as_peft_does(
    hf_model: Any, bundled_gguf: Path, tmp_path: Path
) -> None:
    """Next-token argmax along llama.cpp's greedy replies: llama.cpp with the converted
    adapter agrees with transformers + peft (measured 0.90-0.98) far more than with the
    base (0.56-0.60); B of q/k left in HF row order drops it to 0.73 (0.44 with q/k alone)."""
    import torch
    import xllamacpp as xl

    model, tokenizer = hf_model
    peft_model = make_peft_adapter(model, tmp_path / "adapter", list(SHAPES), magnitude=0.3)
    try:
        lora = convert_peft_adapter(
            tmp_path / "adapter", tmp_path / "a.gguf", base_gguf=bundled_gguf
        )
        params = xl.CommonParams()
        params.model.path = str(bundled_gguf)
        params.n_ctx, params.n_parallel, params.warmup, params.verbosity = 1024, 1, False, 0
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 1
        info = xl.CommonAdapterLoraInfo()
        info.path, info.scale = str(lora), 1.0
        params.lora_adapters, params.lora_init_without_apply = [info], True
        server = xl.Server(params)
        agree_peft = agree_base = total = 0
        for question in (
            "What is the capital of France?",
            "Write a haiku about the sea.",
            "List three fruits.",
        ):
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": question}], add_generation_prompt=True
            )["input_ids"]
            answer = server.handle_completions(
                {"prompt": prompt, "n_predict": 24, "temperature": 0, "n_probs": 1,
                 "ignore_eos": True, "cache_prompt": False, "lora": [{"id": 0, "scale": 1.0}]}
            )  # fmt: skip
            tokens = [t["id"] for t in answer["choices"][0]["logprobs"]["content"]]
            ids = torch.tensor([prompt + tokens])
            with torch.no_grad():
                peft_next = peft_model(ids).logits[0, len(prompt) - 1 : -1].argmax(-1)
                with peft_model.disable_adapter():
                    base_next = peft_model(ids).logits[0, len(prompt) - 1 : -1].argmax(-1)
            agree_peft += sum(int(a == b) for a, b in zip(peft_next.tolist(), tokens, strict=True))
            agree_base += sum(int(a == b) for a, b in zip(base_next.tolist(), tokens, strict=True))
            total += len(tokens)
        del server
    finally:
        peft_model.unload()
    print(f"argmax agreement: with peft {agree_peft}/{total}, with the base {agree_base}/{total}")
    assert agree_peft / total >= 0.85, (agree_peft, agree_base, total)
    assert agree_base / total <= 0.75, (agree_peft, agree_base, total)


def _chat_request(text: str, adapter: AdapterRef | None = None) -> Any:
    from mongars_core.types import ChatMessage, GenerationRequest

    return GenerationRequest(
        messages=[ChatMessage(role="user", content=text)],
        max_new_tokens=16,
        temperature=0,
        adapter=adapter,
    )


@pytest.mark.model
@PEFT_ON_TRANSFORMERS_5
async def test_a_users_adapter_answers_that_user_only_through_llama_cpp(
    hf_model: Any, tmp_path: Path, make_assistant: Any
) -> None:
    from mongars_core.adapters import AdapterRegistry
    from mongars_core.settings import Settings
    from mongars_plugins.llamacpp.backend import LlamaCppBackend
    from mongars_plugins.model_store import BUNDLED_MODEL
    from tests.conftest import MODEL_CACHE

    model, _ = hf_model
    make_peft_adapter(model, tmp_path / "peft", ["q_proj", "v_proj"], magnitude=1.0).unload()
    data = tmp_path / "data"
    registry = AdapterRegistry(data / "adapters")
    registry.register(tmp_path / "peft", name="alice-style", version="1", base_model=BUNDLED_MODEL)
    registry.activate("alice-style", "1")
    registry.assign("alice", "alice-style")
    alice_adapter = registry.for_user("alice")
    assert alice_adapter is not None and registry.for_user("bob") is None

    settings = Settings(data_dir=data, cache_dir=MODEL_CACHE, llamacpp={"slots": 2})
    backend = LlamaCppBackend(settings)
    try:
        question = "What is the capital of France?"
        base = await backend.generate(_chat_request(question))
        alone = await backend.generate(_chat_request(question, alice_adapter.ref()))
        assert alone != base

        alice, bob = _chat_request(question, alice_adapter.ref()), _chat_request(question)
        together = await asyncio.gather(backend.generate(alice), backend.generate(bob))
        assert together == [alone, base]
        assert alice.outcome.adapter == "alice-style@1" and bob.outcome.adapter is None

        # Through the assistant: the pipeline looks the adapter up for each user's turn.
        assistant = await make_assistant(
            backend=backend, data_dir=data, llm={"temperature": 0, "max_new_tokens": 16}
        )
        replies = await asyncio.gather(
            assistant.chat("alice", question), assistant.chat("bob", question)
        )
        assert [r.adapter for r in replies] == ["alice-style@1", None]
        assert replies[0].text != replies[1].text
        registry.unassign("alice")
        without = await assistant.chat("alice", question, session_id="after")
        assert without.adapter is None and without.text != replies[0].text
    finally:
        await backend.aclose()


@pytest.mark.model
@PEFT_ON_TRANSFORMERS_5
async def test_a_foreign_or_corrupt_adapter_is_refused_and_the_engine_keeps_serving(
    tmp_path: Path,
) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from mongars_core.adapters import AdapterRegistry
    from mongars_core.settings import Settings
    from mongars_plugins.llamacpp.backend import LlamaCppBackend
    from mongars_plugins.model_store import BUNDLED_MODEL
    from tests.conftest import MODEL_CACHE

    torch.manual_seed(0)
    other = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2,
        )
    )  # fmt: skip
    make_peft_adapter(other, tmp_path / "foreign", ["q_proj", "v_proj"], magnitude=0.1)
    registry = AdapterRegistry(tmp_path / "data" / "adapters")
    # Registered as if for the bundled model: only the shapes tell it apart.
    foreign = registry.register(
        tmp_path / "foreign", name="foreign", version="1", base_model=BUNDLED_MODEL
    )
    corrupt_source = tmp_path / "corrupt"
    corrupt_source.mkdir()
    (corrupt_source / "adapter_config.json").write_text(
        (tmp_path / "foreign" / "adapter_config.json").read_text()
    )
    (corrupt_source / "adapter_model.safetensors").write_bytes(b"\x08" + b"\0" * 7 + b"{broken")
    corrupt = registry.register(
        corrupt_source, name="corrupt", version="1", base_model=BUNDLED_MODEL
    )

    backend = LlamaCppBackend(Settings(data_dir=tmp_path / "data", cache_dir=MODEL_CACHE))
    try:
        with pytest.raises(InvalidInputError, match="foreign@1: adapter for another base model"):
            await backend.generate(_chat_request("hi", foreign.ref()))
        with pytest.raises(InvalidInputError, match=r"corrupt@1: .* not a readable safetensors"):
            await backend.generate(_chat_request("hi", corrupt.ref()))
        assert await backend.generate(_chat_request("Say hello."))  # still serving
    finally:
        await backend.aclose()

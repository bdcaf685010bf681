"""peft LoRA adapters on the torch engine: each request with its user's adapter, others
with the base model, as transformers + peft generate them.

The checks of an adapter's files run everywhere; the rest (``model``) loads the bundled
model on one CPU thread and makes random-B adapters on it with peft
(``tests.test_lora.make_peft_adapter``). Greedy replies of 12 tokens keep them short.
The CUDA test (``scripts/gpu-check`` runs it) takes the stand-in model where the bundled
one is not cached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mongars_core.adapters import Adapter, AdapterRegistry
from mongars_core.errors import InvalidInputError
from mongars_core.settings import Settings
from mongars_core.types import AdapterRef, ChatMessage, GenerationRequest
from mongars_plugins.cuda import backend as backend_module
from mongars_plugins.cuda.adapters import check_adapter, is_peft_lora
from mongars_plugins.cuda.backend import LocalModelBackend
from mongars_plugins.model_store import BUNDLED_MODEL
from tests import test_lora
from tests.conftest import MODEL_CACHE
from tests.test_lora import PEFT_ON_TRANSFORMERS_5, make_peft_adapter, peft_adapter

pytest.importorskip("peft", reason="needs peft (mongars-assistant[train])")

bundled_gguf = test_lora.bundled_gguf
hf_model = test_lora.hf_model

QUESTION = "What is the capital of France?"
TOKENS = 12


def ask(adapter: AdapterRef | None = None, stop: list[str] | None = None) -> GenerationRequest:
    return GenerationRequest(
        messages=[ChatMessage(role="user", content=QUESTION)],
        max_new_tokens=TOKENS,
        temperature=0,
        adapter=adapter,
        stop=stop or [],
    )


def torch_settings(data_dir: Path, **local: Any) -> Settings:
    return Settings(
        data_dir=data_dir, cache_dir=MODEL_CACHE, local={"device": "cpu", "threads": 1, **local}
    )


# -- the checks of an adapter's files (no model) ------------------------------------------------

TINY_SHAPES = {  # test_lora's tiny model: module -> (out, in), two layers
    f"model.layers.{layer}.{where}.{module}": (n_out, n_in)
    for layer in range(test_lora.LAYERS)
    for module, (where, n_out, n_in) in test_lora.SHAPES.items()
}


def tiny_ref(folder: Path, name: str = "tiny") -> AdapterRef:
    return AdapterRef(name=name, version="1", path=str(folder), base_model=BUNDLED_MODEL)


def test_a_peft_lora_that_fits_the_model_passes_the_checks(tmp_path: Path) -> None:
    folder, _ = peft_adapter(tmp_path / "a")
    check_adapter(tiny_ref(folder), TINY_SHAPES)
    assert is_peft_lora(folder)


def test_an_adapter_for_other_shapes_or_layers_is_refused_naming_it(tmp_path: Path) -> None:
    wide, _ = peft_adapter(tmp_path / "wide", hidden=32)
    with pytest.raises(InvalidInputError, match=r"adapter tiny@1: adapter for another base model"):
        check_adapter(tiny_ref(wide), TINY_SHAPES)
    deep, _ = peft_adapter(tmp_path / "deep", layers=3)
    with pytest.raises(InvalidInputError, match=r"has no linear layer model\.layers\.2"):
        check_adapter(tiny_ref(deep), TINY_SHAPES)


def test_a_damaged_or_incomplete_adapter_folder_is_refused_naming_it(tmp_path: Path) -> None:
    good, _ = peft_adapter(tmp_path / "good")
    weights = (good / "adapter_model.safetensors").read_bytes()

    def variant(name: str, file: str, content: bytes | None) -> AdapterRef:
        """A copy of ``good`` with ``file`` replaced by ``content`` (``None``: removed)."""
        folder = tmp_path / name
        shutil.copytree(good, folder)
        if content is None:
            (folder / file).unlink()
        else:
            (folder / file).write_bytes(content)
        return tiny_ref(folder, name)

    config, safetensors = "adapter_config.json", "adapter_model.safetensors"
    ia3 = json.dumps({"peft_type": "IA3"}).encode()
    # Trained biases would be loaded into the base model's own layers, for every user.
    biased = json.dumps({**json.loads((good / config).read_text()), "bias": "all"}).encode()
    cases = {
        "no folder": (tiny_ref(tmp_path / "absent", "absent"), "its folder .* is missing"),
        "no config": (variant("noconfig", config, None), "no adapter_config.json"),
        "bad config": (variant("badconfig", config, b"{"), "cannot read .*adapter_config.json"),
        "not LoRA": (variant("ia3", config, ia3), "only LoRA adapters are served, not IA3"),
        "biases": (variant("bias", config, biased), "adapters that train biases"),
        "no weights": (variant("noweights", safetensors, None), "no adapter_model.safetensors"),
        "truncated": (
            variant("truncated", safetensors, weights[: len(weights) // 2]),
            "lies outside the file",
        ),
        "huge header": (
            variant("huge", safetensors, struct.pack("<Q", 1 << 40) + b"{}"),
            "not a readable safetensors file",
        ),
        "junk": (
            variant("junk", safetensors, b"\x08" + b"\0" * 7 + b"{broken"),
            "not a readable safetensors file",
        ),
    }
    for label, (ref, message) in cases.items():
        with pytest.raises(InvalidInputError, match=f"adapter {ref.id}: .*{message}") as refused:
            check_adapter(ref, TINY_SHAPES)
        assert "\n" not in str(refused.value), label


def test_a_folder_changed_since_it_was_registered_is_refused(tmp_path: Path) -> None:
    folder, _ = peft_adapter(tmp_path / "source")
    registry = AdapterRegistry(tmp_path / "adapters")
    adapter = registry.register(folder, name="tiny", version="1", base_model=BUNDLED_MODEL)
    check_adapter(adapter.ref(), TINY_SHAPES)
    weights = Path(adapter.path) / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError, match=r"tiny@1: .* do not match the registry's checksum"):
        check_adapter(adapter.ref(), TINY_SHAPES)


def test_only_a_peft_lora_for_the_bundled_model_can_be_served(tmp_path: Path) -> None:
    backend = LocalModelBackend(torch_settings(tmp_path / "data"))  # nothing is loaded
    folder, _ = peft_adapter(tmp_path / "lora")
    assert backend.can_serve_adapter(tiny_ref(folder))
    assert not backend.loaded
    assert not backend.can_serve_adapter(
        AdapterRef(name="x", version="1", path=str(folder), base_model="qwen2.5-0.5b")
    )
    ia3 = tmp_path / "ia3"
    ia3.mkdir()
    (ia3 / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    (ia3 / "adapter_model.safetensors").write_bytes(b"")
    gguf_only = tmp_path / "gguf"
    gguf_only.mkdir()
    (gguf_only / "lora.gguf").write_bytes(b"GGUF")
    for folder in (ia3, gguf_only, tmp_path / "absent"):
        assert not backend.can_serve_adapter(tiny_ref(folder)), folder


# -- with the bundled model ---------------------------------------------------------------------

ALL_MODULES = list(test_lora.SHAPES)


@dataclass
class Made:
    """An adapter made with peft on the bundled model, and what transformers + peft answer."""

    folder: Path
    expected: str


@pytest.fixture(scope="module")
def made(hf_model: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Made]:
    """Three random-B adapters (q/v strong, q/v other, on every projection) with the greedy
    replies to ``QUESTION`` that transformers + peft write with each, and the base's."""
    import torch

    model, tokenizer = hf_model
    root = tmp_path_factory.mktemp("peft")
    encoded = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )

    def greedy(generator: Any) -> str:
        with torch.inference_mode():
            output = generator.generate(
                **encoded,
                max_new_tokens=TOKENS,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
        new = output[0, encoded["input_ids"].shape[-1] :].tolist()
        return str(tokenizer.decode(new, skip_special_tokens=True))

    result = {"base": Made(root, greedy(model))}
    for name, modules, magnitude, seed in (
        ("strong", ["q_proj", "v_proj"], 1.0, 1),
        ("other", ["q_proj", "v_proj"], 1.0, 2),
        ("every", ALL_MODULES, 0.5, 3),
    ):
        peft_model = make_peft_adapter(model, root / name, modules, magnitude, seed=seed)
        try:
            result[name] = Made(root / name, greedy(peft_model))
        finally:
            peft_model.unload()
    return result


def registered(data_dir: Path, made: dict[str, Made], *names: str) -> dict[str, Adapter]:
    registry = AdapterRegistry(data_dir / "adapters")
    return {
        name: registry.register(made[name].folder, name=name, version="1", base_model=BUNDLED_MODEL)
        for name in names
    }


@pytest.mark.model
@PEFT_ON_TRANSFORMERS_5
async def test_a_request_with_an_adapter_is_generated_as_transformers_and_peft_do(
    tmp_path: Path, made: dict[str, Made]
) -> None:
    adapters = registered(tmp_path / "data", made, "strong", "every")
    backend = LocalModelBackend(torch_settings(tmp_path / "data"))
    base = await backend.generate(ask())
    assert base == made["base"].expected
    for name in ("strong", "every"):
        request = ask(adapters[name].ref())
        assert await backend.generate(request) == made[name].expected
        assert request.outcome.adapter == f"{name}@1"
        assert made[name].expected != base
        # Right after it, the base model again: the adapter is fully off.
        after = ask()
        assert await backend.generate(after) == base
        assert after.outcome.adapter is None
    assert backend.adapters is not None and backend.adapters.loads == 2


@pytest.mark.model
@PEFT_ON_TRANSFORMERS_5
async def test_concurrent_turns_each_get_their_own_adapter_and_a_shared_one_loads_once(
    tmp_path: Path, made: dict[str, Made]
) -> None:
    adapters = registered(tmp_path / "data", made, "strong", "other")
    # The same files under another name: the same checksum, so the same loaded adapter.
    twin = AdapterRegistry(tmp_path / "data" / "adapters").register(
        made["strong"].folder, name="twin", version="2", base_model=BUNDLED_MODEL
    )
    assert twin.sha256 == adapters["strong"].sha256
    backend = LocalModelBackend(torch_settings(tmp_path / "data"))
    requests = [
        ask(adapters["strong"].ref()),
        ask(),
        ask(adapters["other"].ref()),
        ask(twin.ref()),
        ask(),
    ]
    replies = await asyncio.gather(*(backend.generate(r) for r in requests))
    assert replies == [
        made["strong"].expected,
        made["base"].expected,
        made["other"].expected,
        made["strong"].expected,
        made["base"].expected,
    ]
    assert [r.outcome.adapter for r in requests] == ["strong@1", None, "other@1", "twin@2", None]
    assert backend.adapters is not None
    assert backend.adapters.loads == 2
    assert backend.adapters.keys == [adapters["other"].sha256, adapters["strong"].sha256]


@pytest.mark.model
@PEFT_ON_TRANSFORMERS_5
async def test_beyond_max_adapters_the_least_recently_used_one_is_dropped(
    tmp_path: Path, made: dict[str, Made]
) -> None:
    adapters = registered(tmp_path / "data", made, "strong", "other", "every")
    strong, other, every = (adapters[n] for n in ("strong", "other", "every"))
    backend = LocalModelBackend(torch_settings(tmp_path / "data", max_adapters=2))
    for adapter in (strong, other, strong, every):  # "other" is now the oldest
        assert await backend.generate(ask(adapter.ref())) == made[adapter.name].expected
    loaded = backend.adapters
    assert loaded is not None
    assert loaded.keys == [strong.sha256, every.sha256]
    assert (loaded.loads, loaded.evictions) == (3, 1)
    assert len(loaded._peft.peft_config) == 2  # deleted from the model, not only forgotten
    # Used again, it is loaded again (and "strong" goes), with the same reply.
    assert await backend.generate(ask(other.ref())) == made["other"].expected
    assert loaded.keys == [every.sha256, other.sha256]
    assert (loaded.loads, loaded.evictions) == (4, 2)
    assert await backend.generate(ask()) == made["base"].expected


@pytest.mark.model
@PEFT_ON_TRANSFORMERS_5
async def test_a_broken_or_foreign_adapter_is_a_clear_error_and_the_model_serves_on(
    tmp_path: Path, made: dict[str, Made]
) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tiny = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2,
        )
    )  # fmt: skip
    make_peft_adapter(tiny, tmp_path / "foreign", ["q_proj", "v_proj"], magnitude=0.1).unload()
    # Its config asks for rank 8, its weights are rank 4: only peft's loading finds it.
    mismatched = tmp_path / "mismatched"
    shutil.copytree(made["strong"].folder, mismatched)
    config = json.loads((mismatched / "adapter_config.json").read_text())
    (mismatched / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    registry = AdapterRegistry(tmp_path / "data" / "adapters")
    # Registered as if for the bundled model: only the shapes tell them apart.
    foreign = registry.register(
        tmp_path / "foreign", name="foreign", version="1", base_model=BUNDLED_MODEL
    )
    mismatch = registry.register(mismatched, name="mismatch", version="1", base_model=BUNDLED_MODEL)
    good = registry.register(
        made["strong"].folder, name="good", version="1", base_model=BUNDLED_MODEL
    )
    gone = AdapterRef(
        name="gone", version="1", path=str(tmp_path / "gone"), base_model=BUNDLED_MODEL
    )

    backend = LocalModelBackend(torch_settings(tmp_path / "data"))
    # The first adapter this model sees fails inside peft, after the model was wrapped.
    with pytest.raises(InvalidInputError, match=r"^adapter mismatch@1: peft could not load it"):
        await backend.generate(ask(mismatch.ref()))
    assert await backend.generate(ask()) == made["base"].expected
    for ref, message in (
        (foreign.ref(), "foreign@1: adapter for another base model: model.layers.0"),
        (gone, "gone@1: its folder .* is missing"),
        (mismatch.ref(), "mismatch@1: peft could not load it"),
    ):
        with pytest.raises(InvalidInputError, match=message) as refused:
            await backend.generate(ask(ref))
        assert "\n" not in str(refused.value)
        assert await backend.generate(ask()) == made["base"].expected
    assert await backend.generate(ask(good.ref())) == made["strong"].expected
    assert backend.adapters is not None and backend.adapters.keys == [good.sha256]
    assert await backend.generate(ask()) == made["base"].expected


@pytest.mark.model
@PEFT_ON_TRANSFORMERS_5
async def test_an_adapter_for_another_base_model_is_answered_by_the_base_model(
    tmp_path: Path, made: dict[str, Made], caplog: pytest.LogCaptureFixture
) -> None:
    other = AdapterRef(
        name="qwen-style",
        version="1",
        path=str(made["strong"].folder),
        base_model="qwen2.5-0.5b",
    )
    backend = LocalModelBackend(torch_settings(tmp_path / "data"))
    assert not backend.can_serve_adapter(other)
    caplog.set_level(logging.WARNING, logger=backend_module.__name__)
    for _ in range(2):
        request = ask(other)
        assert await backend.generate(request) == made["base"].expected
        assert request.outcome.adapter is None
    warnings = [r.getMessage() for r in caplog.records if "qwen-style@1" in r.getMessage()]
    assert len(warnings) == 1 and "qwen2.5-0.5b" in warnings[0], warnings
    assert backend.adapters is not None and backend.adapters.loads == 0


@pytest.mark.model
@PEFT_ON_TRANSFORMERS_5
async def test_through_the_assistant_alices_turn_has_her_adapter_and_bobs_none(
    tmp_path: Path, made: dict[str, Made], make_assistant: Any
) -> None:
    data = tmp_path / "data"
    registry = AdapterRegistry(data / "adapters")
    registry.register(
        made["strong"].folder, name="alice-style", version="1", base_model=BUNDLED_MODEL
    )
    registry.activate("alice-style", "1")
    registry.assign("alice", "alice-style")
    backend = LocalModelBackend(torch_settings(data))
    assistant = await make_assistant(
        backend=backend, data_dir=data, llm={"temperature": 0, "max_new_tokens": TOKENS}
    )
    alice, bob = await asyncio.gather(
        assistant.chat("alice", QUESTION), assistant.chat("bob", QUESTION)
    )
    assert (alice.adapter, bob.adapter) == ("alice-style@1", None)
    assert alice.text != bob.text
    assert not any("was not applied" in warning for warning in alice.warnings), alice.warnings
    registry.unassign("alice")
    without = await assistant.chat("alice", QUESTION, session_id="after")
    assert without.adapter is None and without.text != alice.text


@pytest.mark.model
@PEFT_ON_TRANSFORMERS_5
async def test_a_reply_cut_by_a_stop_string_still_names_its_adapter(
    tmp_path: Path, made: dict[str, Made]
) -> None:
    """The outcome's adapter does not depend on the generation ending by itself."""
    adapters = registered(tmp_path / "data", made, "every")
    backend = LocalModelBackend(torch_settings(tmp_path / "data"))
    expected = made["every"].expected
    cut = expected.split()[1]  # the second word ends the reply early
    request = ask(adapters["every"].ref(), stop=[cut])
    reply = await backend.generate(request)
    assert expected.startswith(reply) and len(reply) < len(expected)
    assert request.outcome.adapter == "every@1"


@pytest.mark.model
@PEFT_ON_TRANSFORMERS_5
async def test_an_adapter_request_swaps_in_merged_weights_and_the_base_tensors_come_back(
    tmp_path: Path, made: dict[str, Made]
) -> None:
    """peft's layers are out of the model: the adapter's compute with W + scale·B·A, made
    once, and afterwards (a failure included) hold their own tensors, values unchanged."""
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    adapters = registered(tmp_path / "data", made, "strong")
    backend = LocalModelBackend(torch_settings(tmp_path / "data"))
    assert await backend.generate(ask()) == made["base"].expected
    weights = {
        name: (parameter, parameter.data_ptr(), parameter.detach().clone())
        for name, parameter in backend._model.named_parameters()
        if name.endswith(("q_proj.weight", "v_proj.weight"))
    }
    pointers = {name: p.data_ptr() for name, p in backend._model.named_parameters()}

    def unchanged() -> bool:
        return all(
            parameter.data_ptr() == pointer and torch.equal(parameter, values)
            for parameter, pointer, values in weights.values()
        )

    for _ in range(2):
        assert await backend.generate(ask(adapters["strong"].ref())) == made["strong"].expected
        assert unchanged()
    loaded = backend.adapters
    assert loaded is not None and loaded.merges == 1  # made once, used twice
    assert loaded.merged_bytes == sum(4 * values.numel() for _, _, values in weights.values())
    wrapped = sum(isinstance(m, BaseTunerLayer) for m in backend._model.modules())
    assert wrapped == len(weights)
    with pytest.raises(RuntimeError, match="mid-generation"), loaded.use(adapters["strong"].ref()):
        assert not any(p.data_ptr() == ptr for p, ptr, _ in weights.values())
        assert not any(isinstance(m, BaseTunerLayer) for m in backend._model.modules())
        raise RuntimeError("mid-generation")
    assert unchanged()
    assert sum(isinstance(m, BaseTunerLayer) for m in backend._model.modules()) == wrapped
    after = {
        name.replace(".base_layer", ""): p.data_ptr()
        for name, p in backend._model.named_parameters()
        if "lora_" not in name
    }
    assert after == pointers
    assert await backend.generate(ask()) == made["base"].expected


@pytest.mark.model
@PEFT_ON_TRANSFORMERS_5
async def test_an_adapter_that_cannot_be_merged_is_applied_by_peft(
    tmp_path: Path, hf_model: Any, made: dict[str, Made]
) -> None:
    """DoRA scales each merged column by its norm: not W + B·A, so peft applies it."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, tokenizer = hf_model
    torch.manual_seed(4)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], use_dora=True)
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(4)
    try:
        with torch.no_grad():
            for name, parameter in peft_model.named_parameters():
                if "lora_B" in name:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator))
        peft_model.eval()
        peft_model.save_pretrained(str(tmp_path / "dora"))
        encoded = tokenizer.apply_chat_template(
            [{"role": "user", "content": QUESTION}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.inference_mode():
            output = peft_model.generate(
                **encoded, max_new_tokens=TOKENS, do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )  # fmt: skip
        expected = tokenizer.decode(
            output[0, encoded["input_ids"].shape[-1] :].tolist(), skip_special_tokens=True
        )
    finally:
        peft_model.unload()
    strong = registered(tmp_path / "data", made, "strong")["strong"]
    dora = AdapterRegistry(tmp_path / "data" / "adapters").register(
        tmp_path / "dora", name="dora", version="1", base_model=BUNDLED_MODEL
    )
    backend = LocalModelBackend(torch_settings(tmp_path / "data"))
    reply = await backend.generate(ask(dora.ref()))
    assert reply == expected != made["base"].expected
    assert backend.adapters is not None and backend.adapters.merges == 0
    assert backend.adapters.merged_bytes == 0
    # A merged adapter right after it: peft's branches are off again, or both would apply.
    assert await backend.generate(ask(strong.ref())) == made["strong"].expected
    assert backend.adapters.merges == 1
    assert await backend.generate(ask(dora.ref())) == expected
    assert await backend.generate(ask()) == made["base"].expected


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.fixture(scope="module")
def cuda_made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The models folder of the CUDA test and a random-B adapter made on its model: the
    cache's converted bundled model, else the stand-in (``tests/gpu_standin.py``: the GPU
    machine ``scripts/gpu-check`` runs on may be offline, without the bundled file)."""
    import torch
    from transformers import AutoModelForCausalLM

    from mongars_plugins.cuda import model as model_files
    from tests.gpu_standin import build_standin

    root = tmp_path_factory.mktemp("cuda")
    models = model_files.model_dir(Settings(cache_dir=MODEL_CACHE)).parent
    if not model_files.is_ready(models / model_files.MODEL_NAME):
        models = build_standin(root / "models").parent
    model = AutoModelForCausalLM.from_pretrained(
        str(models / model_files.MODEL_NAME), dtype=torch.float32
    )
    make_peft_adapter(model, root / "strong", ["q_proj", "v_proj"], 1.0, seed=1).unload()
    return models, root / "strong"


@pytest.mark.model
@PEFT_ON_TRANSFORMERS_5
@pytest.mark.filterwarnings("default")  # torch.compile's own warnings on some drivers
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA GPU")
async def test_on_cuda_an_adapter_request_runs_eager_and_the_base_stays_compiled(
    tmp_path: Path, cuda_made: tuple[Path, Path]
) -> None:
    """bf16 on CUDA: replies are not the CPU's float32 ones, but each is reproducible, the
    base's is the same before and after an adapter, and the base keeps the static cache."""
    from tests.test_gpu import _static_cache_length

    models, folder = cuda_made
    strong = AdapterRegistry(tmp_path / "data" / "adapters").register(
        folder, name="strong", version="1", base_model=BUNDLED_MODEL
    )
    settings = Settings(
        data_dir=tmp_path / "data",
        cache_dir=MODEL_CACHE,
        local={"device": "cuda", "model_dir": str(models), "fetch": False},
    )
    backend = LocalModelBackend(settings)
    base = await backend.generate(ask())
    requests = [ask(strong.ref()) for _ in range(2)]
    adapted = [await backend.generate(request) for request in requests]
    assert adapted[0] == adapted[1] != base
    assert [request.outcome.adapter for request in requests] == ["strong@1"] * 2
    after = ask()
    assert await backend.generate(after) == base and after.outcome.adapter is None
    assert _static_cache_length(backend._model) is not None

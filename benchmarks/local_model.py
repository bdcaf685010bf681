"""The local engines side by side: llama.cpp backend, xllamacpp directly, torch backend.

One run measures, on the bundled GGUF (SmolLM2-135M-Instruct Q4_1), greedy:

* decode tokens/s of one stream: the llamacpp backend against xllamacpp called
  directly with the same file, prompt, threads, slots and sampling settings
  (target ≥ 0.9×), and against the torch backend (target ≥ 4×);
* aggregate tokens/s of 4 concurrent streams, backend against xllamacpp with
  the same slots (target ≥ 0.9×), and the latency each stream sees;
* time to first token for a prompt of about 500 tokens;
* peak resident memory with the model loaded (target ≤ 400 MB) and cold start
  to first token (target < 3 s), each in a fresh process so that nothing else
  (torch, an earlier engine) is counted;
* the same figures with a LoRA adapter active (a random peft adapter on the
  bundled model, made here), and what the adapter costs per token on each
  engine, llama.cpp and torch: one-stream decode without and with it, the two
  taking turns run by run (target: under 10% more time per token);
* decode tokens/s of llama.cpp with 1 and 2 threads, idle and with one busy
  process on the machine.

The backend and xllamacpp-direct figures come from one process that takes
turns between them run by run, so that a shared machine's load falls on both.
Every prompt is new to the engine (a run number starts it), so no prompt cache
is reused.

    .venv/bin/python benchmarks/local_model.py [--tokens 128] [--runs 3] [--threads N]
        [--cost-runs 5] [--skip-torch] [--skip-adapter] [--model NAME] [--name local_model]

``--model NAME`` measures a GGUF the user added (``mongars models add FILE``)
the same way, without the torch and adapter runs.

Results: benchmarks/results/<name>.{json,md} (``local_model`` by default,
``local_model_<NAME>`` with ``--model``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table, write_results

PROMPT = "Write a long story about a dragon who learns to read."
LONG_TEXT = (
    "The river town kept its records in a stone house by the bridge, where clerks wrote "
    "down every boat that passed, what it carried, and who paid the toll. "
)
LONG_PROMPT_TOKENS = 500
BUSY_LOOP = "while True: pass"
CHILD_TIMEOUT_S = 300
COST_TORCH_TOKENS = 32
"""New tokens per torch run when measuring the adapter's cost (torch decodes ~15 tok/s)."""
EVERY_PROJECTION = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ADAPTER_COST_TARGET_PCT = 10.0
"""Issue 11: serving with an adapter costs under 10% more time per token than the base."""


# -- what every measurement reports ---------------------------------------------------


@dataclass
class Timing:
    """One stream as its client sees it."""

    first_token_s: float
    total_s: float
    tokens: int

    @property
    def decode_tps(self) -> float:
        """Tokens after the first, per second after the first arrived."""
        decode = self.total_s - self.first_token_s
        return (self.tokens - 1) / decode if self.tokens > 1 and decode > 0 else 0.0


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def numbered(prompt: str, run: int) -> str:
    """``prompt`` made new to every prompt cache by a run number in front."""
    return f"({run}) {prompt}"


def long_prompt() -> str:
    """About LONG_PROMPT_TOKENS tokens with the chat template (SmolLM2's tokenizer:
    about 30 tokens per LONG_TEXT, 40 for the template and system prompt)."""
    return LONG_TEXT * 15 + "\nSummarise the text above in one sentence."


# -- xllamacpp, called directly ---------------------------------------------------------


class Direct:
    """An xllamacpp Server built the way the llamacpp engine builds one, without mongars."""

    def __init__(
        self,
        gguf: Path,
        threads: int,
        slots: int,
        context: int,
        loras: tuple[Path, ...] = (),
        engine: dict[str, Any] | None = None,
    ) -> None:
        import xllamacpp as xl

        # The engine's own settings (batch, polling, KV cache type, prompt cache).
        engine = engine or {}
        params = xl.CommonParams()
        params.model.path = str(gguf)
        params.n_ctx = context
        params.n_parallel = slots
        params.n_batch = engine.get("batch_size", 512)
        params.n_ubatch = min(params.n_batch, 512)
        for cpu in (params.cpuparams, params.cpuparams_batch):
            cpu.n_threads = threads
            cpu.poll = engine.get("poll", 0)
        params.cache_ram_mib = engine.get("prompt_cache_mib", 0)
        kv_type = getattr(xl.ggml_type, f"GGML_TYPE_{engine.get('kv_cache_type', 'f16').upper()}")
        params.cache_type_k = kv_type
        params.cache_type_v = kv_type
        params.warmup = False
        params.verbosity = 0
        if loras:
            infos = []
            for path in loras:
                info = xl.CommonAdapterLoraInfo()
                info.path = str(path)
                info.scale = 0.0
                infos.append(info)
            params.lora_adapters = infos
            params.lora_init_without_apply = True
        self.loras = loras
        self.server = xl.Server(params)

    def run(self, prompt: str, tokens: int, *, lora: bool = False) -> Timing:
        """Stream one reply as the backend does (same request fields, usage at the end)."""
        started = time.perf_counter()
        first: list[float] = []
        usage: dict[str, Any] = {}

        def callback(chunk: Any) -> bool:
            for choice in chunk.get("choices") or ():
                if (choice.get("delta") or {}).get("content") and not first:
                    first.append(time.perf_counter() - started)
            usage.update(chunk.get("usage") or {})
            return False

        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": tokens,
            "temperature": 0.0,
            "top_p": 0.9,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.loras:
            body["lora"] = [
                {"id": i, "scale": 1.0 if lora else 0.0} for i in range(len(self.loras))
            ]
        self.server.handle_chat_completions(body, callback)
        total = time.perf_counter() - started
        return Timing((first or [total])[0], total, int(usage.get("completion_tokens", 0)))


def direct_capped(direct: Direct, prompt: str, tokens: int, cap_s: float) -> Timing:
    """A run stopped after ``cap_s`` seconds, counting the tokens streamed until then."""
    started = time.perf_counter()
    stamps: list[float] = []

    def callback(chunk: Any) -> bool:
        for choice in chunk.get("choices") or ():
            if (choice.get("delta") or {}).get("content"):
                stamps.append(time.perf_counter() - started)
        return time.perf_counter() - started > cap_s

    direct.server.handle_chat_completions(
        {
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": tokens,
            "temperature": 0.0,
            "ignore_eos": True,
            "stream": True,
        },
        callback,
    )
    if not stamps:
        return Timing(time.perf_counter() - started, time.perf_counter() - started, 0)
    return Timing(stamps[0], stamps[-1], len(stamps))


def direct_concurrent(
    direct: Direct, prompts: list[str], tokens: int, lora: bool = False
) -> tuple[float, list[Timing]]:
    results: list[Timing | None] = [None] * len(prompts)

    def one(index: int) -> None:
        results[index] = direct.run(prompts[index], tokens, lora=lora)

    workers = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started, [r for r in results if r is not None]


# -- the mongars backends ---------------------------------------------------------------


def backend_settings(gguf: Path, scratch: Path, threads: int, slots: int) -> Any:
    from mongars_core.settings import Settings

    return Settings(
        data_dir=scratch / "data",
        cache_dir=scratch / "cache",
        local={"gguf_path": str(gguf), "device": "auto"},
        llamacpp={"threads": threads, "slots": slots},
        llm={"temperature": 0},
    )


def request(prompt: str, tokens: int, adapter: Any = None) -> Any:
    from mongars_core.types import ChatMessage, GenerationRequest

    return GenerationRequest(
        messages=[ChatMessage(role="user", content=prompt)],
        max_new_tokens=tokens,
        temperature=0.0,
        top_p=0.9,
        adapter=adapter,
    )


async def backend_run(backend: Any, prompt: str, tokens: int, adapter: Any = None) -> Timing:
    ask = request(prompt, tokens, adapter)
    started = time.perf_counter()
    first: float | None = None
    async for _ in backend.stream(ask):
        if first is None:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    return Timing(first or total, total, int(ask.outcome.tokens or 0))


async def backend_concurrent(
    backend: Any, prompts: list[str], tokens: int, adapter: Any = None
) -> tuple[float, list[Timing]]:
    started = time.perf_counter()
    timings = await asyncio.gather(*(backend_run(backend, p, tokens, adapter) for p in prompts))
    return time.perf_counter() - started, list(timings)


def adapter_ref(folder: Path, name: str = "bench") -> Any:
    from mongars_core.types import AdapterRef
    from mongars_plugins.model_store import BUNDLED_MODEL

    return AdapterRef(name=name, version="1", path=str(folder), base_model=BUNDLED_MODEL, sha256="")


# -- children: each measurement in its own process ---------------------------------------


def child_cold(config: dict[str, Any]) -> dict[str, Any]:
    """Fresh process: build the engine, stream one reply; first-token time and peak RSS."""
    engine, gguf = config["engine"], Path(config["gguf"])
    scratch = Path(config["scratch"])
    result: dict[str, Any] = {}
    if engine == "direct":
        loras = (Path(config["lora_gguf"]),) if config.get("lora_gguf") else ()
        direct = Direct(
            gguf,
            config["threads"],
            config["slots"],
            config["context"],
            loras,
            config["engine_settings"],
        )
        timing = direct.run(numbered(PROMPT, 0), 16, lora=bool(loras))
    else:
        if engine == "torch":
            from mongars_plugins.cuda.backend import LocalModelBackend as Backend
        else:
            from mongars_plugins.llamacpp.backend import LlamaCppBackend as Backend  # type: ignore[assignment]
        settings = backend_settings(gguf, scratch, config["threads"], config["slots"])
        if engine == "torch":
            settings = settings.model_copy(update={"cache_dir": Path(config["torch_cache"])})
        backend = Backend(settings)
        adapter = adapter_ref(Path(config["adapter"])) if config.get("adapter") else None
        timing = asyncio.run(backend_run(backend, numbered(PROMPT, 0), 16, adapter))
        if engine == "torch":
            result["device"] = backend.device
            result["dtype"] = str(next(backend._model.parameters()).dtype)
    result["first_token_at"] = time.time() - (timing.total_s - timing.first_token_s)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def child_compare(config: dict[str, Any]) -> dict[str, Any]:
    """Backend and xllamacpp directly in one process, taking turns run by run."""
    from mongars_plugins.llamacpp.backend import LlamaCppBackend

    gguf, tokens, runs = Path(config["gguf"]), config["tokens"], config["runs"]
    threads, slots, streams = config["threads"], config["slots"], config["streams"]
    lora_gguf = Path(config["lora_gguf"]) if config.get("lora_gguf") else None
    adapter = adapter_ref(Path(config["adapter"])) if config.get("adapter") else None
    scratch = Path(config["scratch"])
    loras = (lora_gguf,) if lora_gguf else ()
    direct = Direct(gguf, threads, slots, config["context"], loras, config["engine_settings"])
    backend = LlamaCppBackend(backend_settings(gguf, scratch, threads, slots))
    out: dict[str, Any] = {"direct": {}, "backend": {}}
    counter = iter(range(1, 10_000))

    lora = adapter is not None

    async def one(engine: str, prompt: str, new_tokens: int) -> dict[str, float]:
        if engine == "direct":
            return asdict_t(direct.run(prompt, new_tokens, lora=lora))
        return asdict_t(await backend_run(backend, prompt, new_tokens, adapter))

    async def four(engine: str, prompts: list[str]) -> dict[str, Any]:
        if engine == "direct":
            return concurrent_summary(*direct_concurrent(direct, prompts, tokens, lora=lora))
        return concurrent_summary(*await backend_concurrent(backend, prompts, tokens, adapter))

    async def main() -> None:
        await backend_run(backend, numbered("Hello", next(counter)), 4, adapter)  # load, warm
        direct.run(numbered("Hello", next(counter)), 4, lora=lora)
        for key in ("decode", "long_prompt", "concurrent"):
            out["direct"][key], out["backend"][key] = [], []
        # Each round, the engine that went second goes first: load changes fall on both.
        orders = [("direct", "backend"), ("backend", "direct")]
        for run in range(runs):
            for engine in orders[run % 2]:
                out[engine]["decode"].append(
                    await one(engine, numbered(PROMPT, next(counter)), tokens)
                )
        for run in range(max(2, runs - 1)):
            for engine in orders[run % 2]:
                out[engine]["long_prompt"].append(
                    await one(engine, numbered(long_prompt(), next(counter)), 8)
                )
        for run in range(max(2, runs - 1)):
            for engine in orders[run % 2]:
                prompts = [numbered(PROMPT, next(counter)) for _ in range(streams)]
                out[engine]["concurrent"].append(await four(engine, prompts))
        ask = request(long_prompt(), 1)
        out["long_prompt_tokens"] = backend.count_prompt_tokens(ask.messages)
        await backend.aclose()

    asyncio.run(main())
    return out


def child_torch(config: dict[str, Any]) -> dict[str, Any]:
    """The torch backend: one-stream decode and a long prompt's first token."""
    from mongars_plugins.cuda.backend import LocalModelBackend

    scratch = Path(config["scratch"])
    settings = backend_settings(Path(config["gguf"]), scratch, config["threads"], 1)
    settings = settings.model_copy(update={"cache_dir": Path(config["torch_cache"])})
    backend = LocalModelBackend(settings)
    counter = iter(range(1, 1000))

    async def main() -> dict[str, Any]:
        await backend_run(backend, numbered("Hello", next(counter)), 4)
        decode = [
            asdict_t(await backend_run(backend, numbered(PROMPT, next(counter)), config["tokens"]))
            for _ in range(config["runs"])
        ]
        long = [
            asdict_t(await backend_run(backend, numbered(long_prompt(), next(counter)), 8))
            for _ in range(2)
        ]
        return {"device": backend.device, "decode": decode, "long_prompt": long}

    return asyncio.run(main())


def child_threads(config: dict[str, Any]) -> dict[str, Any]:
    """xllamacpp decode tokens/s for 1 and 2 threads, idle and beside one busy process."""
    out: dict[str, Any] = {}
    counter = iter(range(1, 1000))
    for threads in (1, 2):
        direct = Direct(Path(config["gguf"]), threads, 1, 2048, engine=config["engine_settings"])
        direct.run(numbered("Hello", next(counter)), 4)
        for load in ("idle", "busy"):
            busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if load == "busy" else None
            try:
                time.sleep(0.2)
                speeds = []
                for _ in range(config["runs"]):
                    timing = direct_capped(
                        direct, numbered(PROMPT, next(counter)), config["tokens"], cap_s=8.0
                    )
                    speeds.append(round(timing.decode_tps, 1))
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            out[f"{threads}/{load}"] = speeds
        del direct
    return out


def asdict_t(timing: Timing) -> dict[str, float]:
    return {
        "first_token_ms": round(timing.first_token_s * 1000, 1),
        "total_s": round(timing.total_s, 3),
        "tokens": timing.tokens,
        "decode_tps": round(timing.decode_tps, 1),
    }


def concurrent_summary(wall: float, timings: list[Timing]) -> dict[str, Any]:
    tokens = sum(t.tokens for t in timings)
    return {
        "wall_s": round(wall, 3),
        "tokens": tokens,
        "aggregate_tps": round(tokens / wall, 1),
        "streams": [asdict_t(t) for t in timings],
    }


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "cold": child_cold,
    "compare": child_compare,
    "torch": child_torch,
    "threads": child_threads,
}


def spawn(kind: str, config: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Run ``kind`` in a fresh interpreter; its JSON result and the time.time() it started."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    started = time.time()
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, json.dumps(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} {config.get('engine', '')} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), started


def child_adapter(config: dict[str, Any]) -> dict[str, Any]:
    """A random peft LoRA on the bundled model (rank 8; every projection unless
    ``config["modules"]`` names them), and its GGUF form."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from mongars_plugins.llamacpp.lora import convert_peft_adapter

    folder, gguf = Path(config["folder"]), Path(config["gguf"])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(config["torch_model"], dtype=torch.float32)
    modules = config.get("modules") or EVERY_PROJECTION
    rank = config.get("rank", 8)
    peft_model = get_peft_model(
        model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=modules)
    )
    with torch.no_grad():  # peft starts B at zero: an adapter that changes nothing
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.01)
    peft_model.save_pretrained(str(folder))
    started = time.perf_counter()
    out = convert_peft_adapter(folder, folder / "adapter.gguf", base_gguf=gguf)
    return {"lora_gguf": str(out), "convert_s": round(time.perf_counter() - started, 2)}


def child_adapter_cost(config: dict[str, Any]) -> dict[str, Any]:
    """One engine's one-stream decode without and with each adapter, taking turns run by run.

    ``config["adapters"]``: mode name -> peft folder. llama.cpp answers every mode from
    one engine with every LoRA loaded (scale 0 for those not asked for). torch's base is
    a backend that never saw an adapter; ``base_wrapped`` is the backend serving the
    adapters, answering without one (its peft layers disabled).
    """
    scratch = Path(config["scratch"])
    adapters = {
        mode: adapter_ref(Path(folder), name=mode) for mode, folder in config["adapters"].items()
    }
    modes: dict[str, tuple[Any, Any]]
    if config["engine"] == "torch":
        from mongars_plugins.cuda.backend import LocalModelBackend

        settings = backend_settings(Path(config["gguf"]), scratch, config["threads"], 1)
        settings = settings.model_copy(update={"cache_dir": Path(config["torch_cache"])})
        plain, served = LocalModelBackend(settings), LocalModelBackend(settings)
        modes = {"base": (plain, None)}
        modes.update({mode: (served, ref) for mode, ref in adapters.items()})
        modes["base_wrapped"] = (served, None)
    else:
        from mongars_plugins.llamacpp.backend import LlamaCppBackend

        settings = backend_settings(
            Path(config["gguf"]), scratch, config["threads"], config["slots"]
        )
        backend = LlamaCppBackend(settings)
        modes = {"base": (backend, None)}
        modes.update({mode: (backend, ref) for mode, ref in adapters.items()})
    counter = iter(range(1, 10_000))
    out: dict[str, Any] = {mode: [] for mode in modes}

    async def main() -> None:
        # Load, start the adapters' engine (llama.cpp) or load them (torch), then warm
        # every mode once all are in.
        for prompt, tokens in (("Hello", 4), (PROMPT, 16)):
            for engine, ref in modes.values():
                await backend_run(engine, numbered(prompt, next(counter)), tokens, ref)
        names = list(modes)
        for run in range(config["runs"]):
            # The order turns each round, so a change of load falls on every mode.
            for mode in names[run % len(names) :] + names[: run % len(names)]:
                engine, ref = modes[mode]
                timing = await backend_run(
                    engine, numbered(PROMPT, next(counter)), config["tokens"], ref
                )
                out[mode].append(asdict_t(timing))
        if config["engine"] != "torch":
            await backend.aclose()

    asyncio.run(main())
    return {"device": getattr(modes["base"][0], "device", None), "runs": out}


CHILDREN["adapter"] = child_adapter
CHILDREN["adapter_cost"] = child_adapter_cost


# -- the parent: run everything, summarise, write the results ----------------------------


def median(values: list[float]) -> float:
    return round(statistics.median(values), 1) if values else 0.0


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def cold_runs(kind_config: dict[str, Any], runs: int) -> dict[str, Any]:
    firsts, rss = [], []
    extra: dict[str, Any] = {}
    for _ in range(runs):
        result, started = spawn("cold", kind_config)
        firsts.append(round(result.pop("first_token_at") - started, 2))
        rss.append(result.pop("peak_rss_mb"))
        extra.update(result)
    return {
        "cold_start_s": firsts,
        "cold_start_best_s": min(firsts),
        "peak_rss_mb": max(rss),
        **extra,
    }


def summarise(compare: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for engine in ("direct", "backend"):
        runs = compare[engine]
        concurrent = runs["concurrent"]
        best = sorted(concurrent, key=lambda c: c["aggregate_tps"])[len(concurrent) // 2]
        out[engine] = {
            "decode_tps": [r["decode_tps"] for r in runs["decode"]],
            "decode_tps_median": median([r["decode_tps"] for r in runs["decode"]]),
            "decode_tokens": [r["tokens"] for r in runs["decode"]],
            "long_prompt_first_token_ms": [r["first_token_ms"] for r in runs["long_prompt"]],
            "long_prompt_first_token_ms_median": median(
                [r["first_token_ms"] for r in runs["long_prompt"]]
            ),
            "aggregate_tps": [c["aggregate_tps"] for c in concurrent],
            "aggregate_tps_median": median([c["aggregate_tps"] for c in concurrent]),
            "median_concurrent_run": best,
        }
    return out


def cost_summary(raw: dict[str, list[dict[str, float]]], tokens: int) -> dict[str, Any]:
    """Each mode's decode tokens/s, and each against the base, round by round."""
    out: dict[str, Any] = {"max_new_tokens": tokens, "rounds": len(raw["base"])}
    for mode, runs in raw.items():
        out[mode] = {
            "decode_tps": [r["decode_tps"] for r in runs],
            "decode_tps_median": median([r["decode_tps"] for r in runs]),
            "decode_tokens": [r["tokens"] for r in runs],
        }
        if mode != "base":
            # Paired within a round: a slower minute slows both runs of the pair.
            ratios = [
                round(r["decode_tps"] / b["decode_tps"], 3) if b["decode_tps"] else 0.0
                for r, b in zip(runs, raw["base"], strict=True)
            ]
            paired = statistics.median(ratios)
            out[mode]["vs_base"] = ratios
            out[mode]["vs_base_median"] = round(paired, 3)
            out[mode]["extra_time_per_token_pct"] = (
                round((1 / paired - 1) * 100, 1) if paired else 0.0
            )
    return out


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else 0.0


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per llama.cpp stream")
    parser.add_argument("--torch-tokens", type=int, default=48, help="new tokens per torch run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--cost-runs",
        type=int,
        default=5,
        help="rounds of base against adapter runs per engine (the adapter's cost)",
    )
    parser.add_argument("--threads", type=int, default=None, help="default: the engine's default")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--skip-adapter", action="store_true")
    parser.add_argument("--skip-threads", action="store_true")
    parser.add_argument(
        "--model",
        help="a model added with `mongars models add` instead of the bundled one (the torch "
        "and adapter runs, which need the bundled model, are skipped)",
    )
    parser.add_argument(
        "--name", default=None, help="results file name (default local_model[_<model>])"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("config", nargs="?", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(CHILDREN[arguments.child](json.loads(arguments.config))))
        return

    import platformdirs

    from mongars_core.settings import Settings
    from mongars_plugins.llamacpp.settings import LlamaCppSettings, available_cores
    from mongars_plugins.model_store import ModelStore, ensure_bundled_gguf

    torch_cache = Path(platformdirs.user_cache_dir("mongars"))
    trained_context: int | None = 8192
    if arguments.model:
        from mongars_core.settings import read_settings

        entry = ModelStore(read_settings()).get(arguments.model)
        gguf, trained_context = entry.path, entry.context_length
        arguments.skip_torch = arguments.skip_adapter = True
    else:
        gguf = ensure_bundled_gguf(Settings(cache_dir=torch_cache))
    arguments.name = arguments.name or (
        f"local_model_{arguments.model}" if arguments.model else "local_model"
    )
    engine = LlamaCppSettings(slots=arguments.slots)
    threads = arguments.threads or engine.resolved_threads
    base = {
        "gguf": str(gguf),
        "threads": threads,
        "slots": arguments.slots,
        "context": engine.context_for(trained_context),
        "tokens": arguments.tokens,
        "runs": arguments.runs,
        "streams": 4,
        "torch_cache": str(torch_cache),
        "engine_settings": {
            key: getattr(engine, key)
            for key in ("batch_size", "poll", "kv_cache_type", "prompt_cache_mib")
            if hasattr(engine, key)
        },
        "scratch": tempfile.mkdtemp(prefix="mongars-bench-"),
    }
    # The backends' data and cache folder, shared by every child: the bundled GGUF is
    # there before the first child starts, as it is between a user's starts.
    ModelStore(backend_settings(gguf, Path(base["scratch"]), threads, arguments.slots)).get(None)
    started = time.perf_counter()
    loads = [load_average()]
    results: dict[str, Any] = {
        "model": gguf.name,
        "cores": available_cores(),
        "threads": threads,
        "slots": arguments.slots,
        "max_new_tokens": arguments.tokens,
    }
    notes: list[str] = []

    def progress(what: str) -> None:
        loads.append(load_average())
        print(f"[{time.perf_counter() - started:5.1f} s, load {loads[-1]}] {what}", flush=True)

    if not arguments.skip_threads:
        progress("threads under load")
        results["threads_under_load"] = spawn("threads", {**base, "tokens": 64, "runs": 2})[0]
    progress("backend and xllamacpp directly, taking turns")
    compare = spawn("compare", base)[0]
    results["long_prompt_tokens"] = compare["long_prompt_tokens"]
    results.update(summarise(compare))
    progress("cold starts and memory")
    results["direct"].update(cold_runs({**base, "engine": "direct"}, 2))
    results["backend"].update(cold_runs({**base, "engine": "backend"}, 2))

    adapter: dict[str, Any] | None = None
    if arguments.skip_adapter:
        notes.append("adapter figures skipped (--skip-adapter)")
    else:
        try:
            import peft  # noqa: F401

            from mongars_plugins.cuda import model as model_files
            from mongars_plugins.learning.settings import LearningSettings
            from mongars_plugins.llamacpp import lora  # noqa: F401
        except ImportError as exc:
            notes.append(f"adapter figures skipped: {exc}")
        else:
            progress("adapter: make a random peft LoRA and convert it")
            folder = Path(tempfile.mkdtemp(prefix="mongars-bench-adapter-"))
            torch_model = model_files.ensure_model(Settings(cache_dir=torch_cache))
            made = spawn(
                "adapter",
                {"folder": str(folder), "gguf": str(gguf), "torch_model": str(torch_model)},
            )[0]
            with_adapter = {**base, "adapter": str(folder), "lora_gguf": made["lora_gguf"]}
            progress("adapter: backend and xllamacpp directly")
            adapter = summarise(spawn("compare", with_adapter)[0])
            adapter["convert_s"] = made["convert_s"]
            adapter["direct"].update(cold_runs({**with_adapter, "engine": "direct"}, 2))
            adapter["backend"].update(cold_runs({**with_adapter, "engine": "backend"}, 2))
            # The adapter the trainer makes by default, beside this every-projection one.
            trained = LearningSettings()
            small = Path(tempfile.mkdtemp(prefix="mongars-bench-adapter-"))
            spawn(
                "adapter",
                {
                    "folder": str(small),
                    "gguf": str(gguf),
                    "torch_model": str(torch_model),
                    "modules": trained.target_modules,
                    "rank": trained.rank,
                },
            )
            adapter["cost_adapters"] = {
                "trainer_default": f"rank {trained.rank}, {'/'.join(trained.target_modules)}",
                "every_projection": "rank 8, every projection",
            }
            folders = {"trainer_default": str(small), "every_projection": str(folder)}
            adapter["cost"] = {}
            for name, tokens in (("llamacpp", arguments.tokens), ("torch", COST_TORCH_TOKENS)):
                if name == "torch" and arguments.skip_torch:
                    continue
                progress(f"adapter: {name} backend, base and adapters taking turns")
                raw = spawn(
                    "adapter_cost",
                    {
                        **base,
                        "adapters": folders,
                        "engine": name,
                        "tokens": tokens,
                        "runs": arguments.cost_runs,
                    },
                )[0]
                adapter["cost"][name] = {
                    "device": raw["device"],
                    **cost_summary(raw["runs"], tokens),
                }
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(small, ignore_errors=True)
            results["adapter"] = adapter

    torch_result: dict[str, Any] | None = None
    if not arguments.skip_torch:
        progress("torch backend")
        raw = spawn("torch", {**base, "tokens": arguments.torch_tokens, "runs": 3})[0]
        torch_result = {
            "device": raw["device"],
            "max_new_tokens": arguments.torch_tokens,
            "decode_tps": [r["decode_tps"] for r in raw["decode"]],
            "decode_tps_median": median([r["decode_tps"] for r in raw["decode"]]),
            "long_prompt_first_token_ms_median": median(
                [r["first_token_ms"] for r in raw["long_prompt"]]
            ),
            **cold_runs({**base, "engine": "torch"}, 1),
        }
        results["torch"] = torch_result
    progress("done")
    shutil.rmtree(base["scratch"], ignore_errors=True)
    results["load_average"] = {"min": min(loads), "max": max(loads), "samples": loads}
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["targets"] = targets(results)
    markdown = render(results, notes)
    path = write_results(arguments.name, results, markdown)
    print(markdown)
    print(f"results written to {path}")


def targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target: what it asks, the figure measured, whether it is met."""

    def check(figures: dict[str, Any], prefix: str) -> dict[str, dict[str, Any]]:
        backend, direct = figures["backend"], figures["direct"]
        decode = ratio(backend["decode_tps_median"], direct["decode_tps_median"])
        aggregate = ratio(backend["aggregate_tps_median"], direct["aggregate_tps_median"])
        rss, cold = backend["peak_rss_mb"], backend["cold_start_best_s"]
        return {
            f"{prefix}decode_vs_direct": {
                "target": "≥ 0.9×",
                "value": decode,
                "met": decode >= 0.9,
            },
            f"{prefix}aggregate_vs_direct": {
                "target": "≥ 0.9×",
                "value": aggregate,
                "met": aggregate >= 0.9,
            },
            f"{prefix}peak_rss_mb": {"target": "≤ 400 MB", "value": rss, "met": rss <= 400},
            f"{prefix}cold_start_s": {"target": "< 3 s", "value": cold, "met": cold < 3},
        }

    out = check(results, "")
    if "torch" in results:
        value = ratio(
            results["backend"]["decode_tps_median"], results["torch"]["decode_tps_median"]
        )
        out["decode_vs_torch"] = {"target": "≥ 4×", "value": value, "met": value >= 4}
    if "adapter" in results:
        out.update(check(results["adapter"], "adapter_"))
        for engine, cost in results["adapter"].get("cost", {}).items():
            for mode in results["adapter"]["cost_adapters"]:
                extra = cost[mode]["extra_time_per_token_pct"]
                out[f"adapter_cost_{engine}_{mode}"] = {
                    "target": f"< {ADAPTER_COST_TARGET_PCT:g}% more",
                    "value": extra,
                    "met": extra < ADAPTER_COST_TARGET_PCT,
                }
    return out


TARGET_NAMES = {
    "decode_vs_direct": "decode tokens/s, backend ÷ xllamacpp directly",
    "aggregate_vs_direct": "aggregate tokens/s of 4 streams, backend ÷ xllamacpp directly",
    "decode_vs_torch": "decode tokens/s, llama.cpp backend ÷ torch backend",
    "peak_rss_mb": "peak resident memory of the backend with the model loaded",
    "cold_start_s": "cold start to first token (fresh process, best of 2)",
}
COST_LABELS = {
    "llamacpp": "llamacpp backend",
    "torch": "torch backend",
    "trainer_default": "the trainer's default adapter",
    "every_projection": "the every-projection adapter",
    "base_wrapped": "the base once wrapped by peft (no adapter, the same backend)",
}


def target_lines(checked: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for key, item in checked.items():
        if key.startswith("adapter_cost_"):  # adapter_cost_<engine>_<adapter>
            engine, mode = key.removeprefix("adapter_cost_").split("_", 1)
            name = (
                f"time per decoded token, {COST_LABELS[mode]} against the base, "
                f"{COST_LABELS[engine]}"
            )
            figure = key
        else:
            figure = key.removeprefix("adapter_")
            name = TARGET_NAMES[figure] + (", adapter active" if key != figure else "")
        if figure.startswith("adapter_cost_"):
            value = f"{item['value']:+}% (median of paired runs)"
        else:
            unit = {"peak_rss_mb": " MB", "cold_start_s": " s"}.get(figure, "×")
            value = f"{item['value']}{unit}"
        lines.append(f"- {name}: {value} (target {item['target']}) — {verdict(item['met'])}")
    return lines


def cost_rows(costs: dict[str, Any]) -> list[str]:
    def runs(figures: dict[str, Any]) -> str:
        return f"{figures['decode_tps_median']} ({', '.join(map(str, figures['decode_tps']))})"

    rows = []
    for engine, cost in costs.items():
        label = COST_LABELS[engine] + (f" ({cost['device']})" if cost.get("device") else "")
        for mode in ("trainer_default", "every_projection", "base_wrapped"):
            if mode not in cost:
                continue
            figures = cost[mode]
            rows.append(
                f"| {label} | {COST_LABELS[mode]} | {cost['max_new_tokens']} "
                f"| {runs(cost['base'])} | {runs(figures)} | {figures['vs_base_median']} "
                f"({', '.join(map(str, figures['vs_base']))}) "
                f"| {figures['extra_time_per_token_pct']:+}% |"
            )
    return rows


def engine_rows(figures: dict[str, Any], torch: dict[str, Any] | None) -> list[str]:
    rows = []
    for label, key in (("llamacpp backend", "backend"), ("xllamacpp directly", "direct")):
        f = figures[key]
        rows.append(
            f"| {label} | {f['decode_tps_median']} ({', '.join(map(str, f['decode_tps']))}) "
            f"| {f['aggregate_tps_median']} ({', '.join(map(str, f['aggregate_tps']))}) "
            f"| {f['long_prompt_first_token_ms_median']} | {f['cold_start_best_s']} "
            f"({', '.join(map(str, f['cold_start_s']))}) | {f['peak_rss_mb']} |"
        )
    if torch is not None:
        rows.append(
            f"| torch backend ({torch['device']}) | {torch['decode_tps_median']} "
            f"({', '.join(map(str, torch['decode_tps']))}) | one at a time "
            f"| {torch['long_prompt_first_token_ms_median']} | {torch['cold_start_best_s']} "
            f"| {torch['peak_rss_mb']} |"
        )
    return rows


def stream_rows(figures: dict[str, Any]) -> list[str]:
    rows = []
    for label, key in (("backend", "backend"), ("directly", "direct")):
        run = figures[key]["median_concurrent_run"]
        for index, stream in enumerate(run["streams"], 1):
            rows.append(
                f"| {label} | {index} | {stream['first_token_ms']} | {stream['total_s']} "
                f"| {stream['tokens']} | {stream['decode_tps']} |"
            )
    return rows


def render(results: dict[str, Any], notes: list[str]) -> str:
    columns = [
        "engine",
        "decode tok/s, 1 stream: median (runs)",
        "aggregate tok/s, 4 streams: median (runs)",
        "first token, long prompt (ms)",
        "cold start to first token (s)",
        "peak RSS (MB)",
    ]
    load = results["load_average"]
    shared = (
        f"The machine was shared: the 1-minute load average went from {load['min']} to "
        f"{load['max']} during the run on {results['cores']} cores, so absolute speeds are "
        "lower and noisier than on an idle machine. The backend and xllamacpp, and the base "
        "and the adapters, took turns run by run, so those ratios are fair; the torch and "
        "llama.cpp figures come from separate processes at different times, so their ratio "
        "carries the machine's changes of load."
        if load["max"] > results["cores"] * 0.5
        else f"The machine was idle (load average {load['min']}–{load['max']})."
    )
    parts = [
        f"# Local engines ({results['model']}, {results['cores']} cores)",
        "",
        f"Greedy, {results['max_new_tokens']} new tokens per llama.cpp stream "
        f"({results.get('torch', {}).get('max_new_tokens', '-')} for torch), "
        f"{results['threads']} thread(s) and {results['slots']} slots for both llama.cpp rows "
        f"(the backend's defaults here), every prompt new to the prompt cache. "
        f"Long prompt: {results['long_prompt_tokens']} tokens with the chat template. "
        f"Whole run: {results['seconds']} s.",
        "",
        table(columns, engine_rows(results, results.get("torch"))),
        "",
        "## The 4 concurrent streams (the median run), as each client sees them",
        "",
        table(
            ["engine", "stream", "first token (ms)", "whole reply (s)", "tokens", "tok/s"],
            stream_rows(results),
        ),
    ]
    adapter = results.get("adapter")
    if adapter is not None:
        parts += [
            "",
            "## With a LoRA adapter active",
            "",
            "A random peft LoRA (rank 8, every projection) on the bundled model, converted "
            f"to GGUF by `mongars_plugins.llamacpp.lora` in {adapter['convert_s']} s; "
            "xllamacpp directly loads that GGUF at start. The backend's cold start "
            "includes starting its engine again with the adapter loaded.",
            "",
            table(columns, engine_rows(adapter, None)),
        ]
        costs = adapter.get("cost") or {}
        if costs:
            rounds = next(iter(costs.values()))["rounds"]
            described = adapter["cost_adapters"]
            parts += [
                "",
                "### What an adapter costs per token, engine by engine",
                "",
                "Two random peft adapters: the one above "
                f"({described['every_projection']}) and one shaped like those the trainer "
                f"makes by default ({described['trainer_default']}). Each engine in a process "
                "of its own: the same one-stream request without an adapter and with each, "
                f"taking turns for {rounds} rounds (the order turning each round), every "
                "prompt new. ÷ base is the decode tokens/s of a round's run over the round's "
                "base run, the median over the rounds; the extra time per token is 1 ÷ that "
                f"− 1 (target: under {ADAPTER_COST_TARGET_PCT:g}%). llama.cpp answers every "
                "run from one engine with both LoRAs loaded (scale 0 for those not asked "
                "for); torch's base is a backend that never saw an adapter, beside the one "
                "that serves them (peft wraps its model on the first adapter).",
                "",
                table(
                    [
                        "engine",
                        "run",
                        "new tokens",
                        "base tok/s: median (runs)",
                        "this run's tok/s",
                        "÷ base: median (rounds)",
                        "extra time per token",
                    ],
                    cost_rows(costs),
                ),
            ]
        if adapter["backend"]["peak_rss_mb"] > 1.5 * results["backend"]["peak_rss_mb"]:
            parts += [
                "",
                "The backend's peak memory with an adapter counts two engines: its first "
                "request loads the base engine, then starts one with the adapter beside it "
                "(LoRA files load when an engine starts) and closes the base one once idle.",
            ]
    threads = results.get("threads_under_load")
    if threads:
        parts += [
            "",
            "## llama.cpp threads under load (xllamacpp directly, 1 slot, 64 tokens, runs)",
            "",
            table(
                ["threads", "idle machine", "one busy process (`python -c 'while True: pass'`)"],
                [
                    f"| {n} | {', '.join(map(str, threads[f'{n}/idle']))} "
                    f"| {', '.join(map(str, threads[f'{n}/busy']))} |"
                    for n in (1, 2)
                ],
            ),
            "",
            f"Medians: 1 thread {median(threads['1/idle'])} tok/s idle, "
            f"{median(threads['1/busy'])} beside the busy process; 2 threads "
            f"{median(threads['2/idle'])} and {median(threads['2/busy'])}. llama.cpp's threads "
            "wait for each other at every layer, so with every core counted on, one busy "
            "process stalls every step. The engine's default is one thread fewer than the "
            "cores (at least one).",
        ]
    parts += [
        "",
        "Cold start: a fresh process, from its start to the first streamed token (imports, "
        "engine start, a 16-token reply).",
    ]
    parts += ["", "## Targets", "", *target_lines(results["targets"]), "", shared]
    parts += [f"\n{note}" for note in notes]
    return "\n".join(parts)


if __name__ == "__main__":
    main()

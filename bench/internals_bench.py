"""Activation reading and steering overhead: psmlab.internals vs raw HF, nnsight, TransformerLens,
repeng -- one run, same random-init Llama, same prompts, same thread count.

Task: keep the LAST position of every decoder block's output (layer l = hidden_states[l+1]) for
N prompts x T tokens in batches of B (defaults 64 x 128, batch 8).

Each reader lives in its own fresh subprocess (same seeded weights, same prompts), so its memory
is not hidden by what another reader freed. All are set up and warmed up first, then timed in
rounds, one full pass per reader per round, rotating the order, so load from other processes on
the shared cores hits every reader alike.

Throughput: tokens/s = N*T / wall time of one full pass; best (least disturbed) and median of
`--repeats` rounds.
Peak memory: a thread polls the process RSS (psutil, every 2 ms) while the reader works.
"session" = max RSS from the warm-up on (first-call costs, whatever a library keeps between
calls) minus RSS once the model and the library wrapper exist; "per pass" = max RSS during a pass
minus RSS at its start (median over passes). glibc runs with MALLOC_MMAP_THRESHOLD_=131072 so
freed tensors return to the OS (else reused memory would be invisible). tracemalloc would miss
torch's allocations, hence RSS.
Correctness: each reader's kept activations are compared with psmlab's (max |diff|).
Steering: generate_batch with no hook vs active add_vector hooks, interleaved runs; overhead from
the best run of each (and median wall, and best process CPU time).

Usage: PYTHONPATH=src python bench/internals_bench.py [--threads 2] [--quick]
Bench-only extras: pip install -r bench/requirements-bench.txt (see bench/README.md).
Writes bench/out/internals_bench.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psmlab  # noqa: F401  (env before torch)

# isort: split
import torch

OUT = Path(__file__).parent / "out" / "internals_bench.json"
TAG = "@@bench "
READERS = (
    "psmlab",
    "hf",
    "hf_backbone",
    "nnsight",
    "nnsight_default",
    "transformer_lens",
    "repeng",
)
LABELS = {
    "psmlab": "psmlab read_activations (pool=last)",
    "hf": "raw HF output_hidden_states=True",
    "hf_backbone": "HF backbone only (model.model), output_hidden_states",
    "nnsight": "nnsight trace + .save() + tracer.stop() (skips LM head)",
    "nnsight_default": "nnsight trace + .save() (default: full forward)",
    "transformer_lens": "TransformerLens run_with_cache (resid_post, return_type=None)",
    "repeng": "repeng batched_get_hiddens (ControlVector.train path)",
}
MODEL: dict[str, Any] = {
    "vocab_size": 32000,
    "hidden_size": 512,
    "intermediate_size": 1376,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "max_position_embeddings": 512,
}


# ----------------------------------------------------------------------------- shared setup
def build_model(seed: int = 0) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    # No eos: generation always runs max_new_tokens, so timings compare equal work.
    cfg = LlamaConfig(**MODEL, bos_token_id=None, eos_token_id=None, pad_token_id=0)
    cfg.architectures = ["LlamaForCausalLM"]
    return LlamaForCausalLM(cfg).eval()


def build_tokenizer() -> Any:
    """Word-level tokenizer "w<i>" -> i, so strings and ids map one to one (nnsight/repeng want one)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(MODEL["vocab_size"])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="w0", unk_token="w0", padding_side="left"
    )


def prompts(n: int, length: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(1, MODEL["vocab_size"], (n, length), generator=gen)


class RssSampler:
    """Peak process RSS, polled every 2 ms by a thread while active (paused while idle)."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.start = self.peak = self.peak_since = self.rss()
        self._active = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        return int(self.proc.memory_info().rss)

    def _sample(self) -> int:
        now = self.rss()
        self.peak, self.peak_since = max(self.peak, now), max(self.peak_since, now)
        return now

    def _run(self) -> None:
        while True:
            self._active.wait()
            if self._stop:
                return
            self._sample()
            time.sleep(self.interval)

    def resume(self) -> int:
        """Start sampling; returns the RSS now and resets the since-resume peak to it."""
        now = self.rss()
        self.peak_since = now
        self._active.set()
        return now

    def pause(self) -> None:
        self._active.clear()
        self._sample()

    def close(self) -> None:
        self._stop = True
        self._active.set()
        self._thread.join()


# ----------------------------------------------------------------------------- readers
# Each factory returns read(ids [b, T]) -> float32 [b, n_layers, d] (last position per layer).
Reader = Callable[[torch.Tensor], torch.Tensor]


def reader_psmlab(model: Any, tok: Any, layers: list[int]) -> Reader:
    from psmlab.internals.reading import ReadItem, read_activations

    def read(ids: torch.Tensor) -> torch.Tensor:
        items = [ReadItem(row, len(row) - 1, len(row)) for row in ids.tolist()]
        acts = read_activations(model, items, layers, pool="last", batch_size=len(items))
        return torch.stack([acts[layer] for layer in layers], 1)

    return read


def reader_hf(model: Any, tok: Any, layers: list[int], backbone: bool = False) -> Reader:
    target = model.model if backbone else model

    def read(ids: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = target(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                output_hidden_states=True,
                use_cache=False,
            )
            return torch.stack([out.hidden_states[i + 1][:, -1].float() for i in layers], 1)

    return read


def reader_nnsight(model: Any, tok: Any, layers: list[int], stop: bool = True) -> Reader:
    from nnsight import LanguageModel

    lm = LanguageModel(model, tokenizer=tok)

    def read(ids: torch.Tensor) -> torch.Tensor:
        saved = []
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        with torch.inference_mode(), lm.trace(inputs) as tracer:
            for i in layers:
                saved.append(lm.model.layers[i].output[:, -1].save())
            if stop:
                tracer.stop()  # nnsight's early exit: skip the LM head like psmlab does
        return torch.stack([getattr(s, "value", s).float() for s in saved], 1)

    return read


def reader_transformer_lens(model: Any, tok: Any, layers: list[int]) -> Reader:
    # Offline: TL reads the config from a local dir and the weights from the live HF model.
    from transformer_lens import HookedTransformer
    from transformer_lens import loading_from_pretrained as loading

    # (the dir name must not contain "llama": TL would then guess the config from the name)
    tmp = tempfile.mkdtemp(prefix="tl_model_")
    model.config.save_pretrained(tmp)
    cfg = loading.get_pretrained_model_config(
        tmp, hf_cfg=model.config.to_dict(), fold_ln=False, device="cpu", dtype=torch.float32
    )
    cfg.tokenizer_name = None  # no hub tokenizer lookup
    state = loading.get_pretrained_state_dict(tmp, cfg, model, dtype=torch.float32)
    tl = HookedTransformer(cfg, tokenizer=None, move_to_device=False)
    # No weight processing: resid_post must equal the HF block outputs.
    tl.load_and_process_state_dict(
        state,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    tl.eval()
    del state
    names = {f"blocks.{i}.hook_resid_post" for i in layers}

    def read(ids: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            _, cache = tl.run_with_cache(ids, names_filter=lambda n: n in names, return_type=None)
            return torch.stack(
                [cache[f"blocks.{i}.hook_resid_post"][:, -1].float() for i in layers], 1
            )

    return read


def reader_repeng(model: Any, tok: Any, layers: list[int]) -> Reader:
    import numpy as np

    if not hasattr(np, "float_"):
        # repeng 0.4.0 pins numpy<2 only for this alias in a type annotation; restoring the alias
        # lets it import under the project's numpy 2 without touching its reading code.
        np.float_ = np.float64  # type: ignore[attr-defined]
    from repeng.extract import batched_get_hiddens

    def read(ids: torch.Tensor) -> torch.Tensor:
        strings = [" ".join(f"w{t}" for t in row) for row in ids.tolist()]
        out = batched_get_hiddens(model, tok, strings, layers, batch_size=len(strings))
        return torch.stack([torch.from_numpy(out[i]) for i in layers], 1)

    return read


FACTORIES: dict[str, Callable[[Any, Any, list[int]], Reader]] = {
    "psmlab": reader_psmlab,
    "hf": reader_hf,
    "hf_backbone": lambda m, t, ls: reader_hf(m, t, ls, backbone=True),
    "nnsight": reader_nnsight,
    "nnsight_default": lambda m, t, ls: reader_nnsight(m, t, ls, stop=False),
    "transformer_lens": reader_transformer_lens,
    "repeng": reader_repeng,
}


def full_pass(read: Reader, ids: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([read(ids[i : i + batch]) for i in range(0, len(ids), batch)])


def say(obj: dict[str, Any]) -> None:
    """Protocol line to the parent (libraries may print to stdout too, hence the tag)."""
    print(TAG + json.dumps(obj), flush=True)


def worker_read(name: str, args: argparse.Namespace) -> None:
    """Set up, warm up, then run one full pass per "pass" line on stdin until "done"."""
    torch.set_num_threads(args.threads)
    model, tok = build_model(), build_tokenizer()
    layers = list(range(MODEL["num_hidden_layers"]))
    ids = prompts(args.prompts, args.tokens)
    t0 = time.perf_counter()
    read = FACTORIES[name](model, tok, layers)
    setup_s = time.perf_counter() - t0
    # Session baseline: model and library wrapper exist, nothing read yet. The session peak
    # includes first-call costs and whatever a library keeps between calls.
    mem = RssSampler()
    mem.resume()
    read(ids[: args.batch])  # warm-up (lazy imports, first-call tracing)
    mem.pause()
    say({"ready": True, "setup_s": setup_s})
    kept = torch.empty(0)
    for line in sys.stdin:
        if line.strip() != "pass":
            break
        start_rss = mem.resume()
        t = time.perf_counter()
        kept = full_pass(read, ids, args.batch)
        dt = time.perf_counter() - t
        mem.pause()
        say({"pass_s": dt, "pass_peak_mb": (mem.peak_since - start_rss) / 2**20})
    mem.close()
    torch.save(kept, Path(args.tmp) / f"{name}.pt")
    say({"session_peak_mb": (mem.peak - mem.start) / 2**20, "kept_shape": list(kept.shape)})


# ----------------------------------------------------------------------------- steering
def worker_generation(args: argparse.Namespace) -> dict[str, Any]:
    from psmlab.internals.generation import generate_batch
    from psmlab.internals.interventions import add_vector

    torch.set_num_threads(args.threads)
    model, tok = build_model(), build_tokenizer()
    n_layers = MODEL["num_hidden_layers"]
    gen_prompts = prompts(args.batch, args.gen_prompt, seed=1).tolist()
    vec = torch.nn.functional.normalize(torch.randn(MODEL["hidden_size"]), dim=0)
    variants: dict[str, Any] = {
        "no hook": None,
        "add_vector, 1 layer, all positions": ([n_layers // 2], "all"),
        "add_vector, 1 layer, generated only": ([n_layers // 2], "generated"),
        "add_vector, all 8 layers, all positions": (list(range(n_layers)), "all"),
    }

    def run(spec: Any) -> tuple[float, float, list[list[int]]]:
        w, c = time.perf_counter(), time.process_time()
        if spec is None:
            out = generate_batch(model, tok, gen_prompts, args.gen_new, batch_size=args.batch)
        else:
            with add_vector(model, vec, spec[0], coeff=8.0, positions=spec[1]):
                out = generate_batch(model, tok, gen_prompts, args.gen_new, batch_size=args.batch)
        return time.perf_counter() - w, time.process_time() - c, [g.new_ids for g in out]

    run(None)  # warm-up
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    outputs: dict[str, list[list[int]]] = {}
    for _ in range(args.gen_repeats):  # interleaved, so drifting load hits every variant alike
        for key, spec in variants.items():
            dt, ct, outputs[key] = run(spec)
            wall[key].append(dt)
            cpu[key].append(ct)
    n_new = args.batch * args.gen_new
    rows = {}
    for key in variants:
        same = sum(
            a == b
            for ra, rb in zip(outputs[key], outputs["no hook"], strict=True)
            for a, b in zip(ra, rb, strict=True)
        )
        # Best-of-N: interference from other processes only ever adds time.
        rows[key] = {
            "tokens_per_s_best": n_new / min(wall[key]),
            "overhead_vs_no_hook_best_wall": min(wall[key]) / min(wall["no hook"]) - 1.0,
            "overhead_vs_no_hook_median_wall": statistics.median(wall[key])
            / statistics.median(wall["no hook"])
            - 1.0,
            "overhead_vs_no_hook_best_cpu": min(cpu[key]) / min(cpu["no hook"]) - 1.0,
            "runs_wall_s": wall[key],
            "runs_cpu_s": cpu[key],
            "tokens_changed_by_steering": 1.0 - same / n_new,
            "generated_tokens": sum(len(r) for r in outputs[key]),
        }
    return rows


# ----------------------------------------------------------------------------- orchestration
def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "nnsight", "transformer-lens", "repeng", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _worker_cmd(role: str, args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", TQDM_DISABLE="1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--worker", role, "--tmp", args.tmp]
    for key in ("threads", "prompts", "tokens", "batch", "repeats"):
        cmd += [f"--{key}", str(getattr(args, key))]
    cmd += ["--gen-new", str(args.gen_new), "--gen-prompt", str(args.gen_prompt)]
    cmd += ["--gen-repeats", str(args.gen_repeats)]
    return cmd, env


class Worker:
    """One reader in its own interpreter, driven line by line over stdin/stdout."""

    def __init__(self, role: str, args: argparse.Namespace) -> None:
        cmd, env = _worker_cmd(role, args)
        self.role = role
        self.log = Path(args.tmp) / f"{role}.log"
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log.open("w"),
            text=True,
        )
        self.error: str | None = None

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(TAG):
                msg: dict[str, Any] = json.loads(line[len(TAG) :])
                if "error" in msg:
                    self.error = msg["error"]
                return msg
        self.proc.wait()
        tail = self.log.read_text().strip().splitlines()[-4:]
        self.error = " | ".join(tail) or f"worker exited with code {self.proc.returncode}"
        return {"error": self.error}

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()


def run_readers(names: list[str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Set every reader up side by side, then time them in rounds (order rotated each round), so
    load from other processes on the shared cores hits all readers alike."""
    workers = {name: Worker(name, args) for name in names}
    results: dict[str, dict[str, Any]] = {}
    for name, w in workers.items():
        results[name] = {"reader": name, **w.receive()}
    live = [n for n in names if workers[n].error is None]
    for r in range(args.repeats):
        for name in live[r % len(live) :] + live[: r % len(live)] if live else []:
            w = workers[name]
            if w.error is not None:
                continue
            w.send("pass")
            msg = w.receive()
            for key in ("pass_s", "pass_peak_mb"):
                results[name].setdefault(key, []).append(msg.get(key))
    for name, w in workers.items():
        if w.error is None:
            w.send("done")
            results[name].update(w.receive())
        if w.proc.poll() is None:
            w.proc.stdin.close()  # type: ignore[union-attr]
            w.proc.wait(timeout=60)
        if w.error is not None:
            results[name] = {"reader": name, "error": w.error}
            continue
        times, n_tokens = results[name]["pass_s"], args.prompts * args.tokens
        results[name]["tokens_per_s_best"] = n_tokens / min(times)
        results[name]["tokens_per_s_median"] = n_tokens / statistics.median(times)
        results[name]["peak_rss_delta_mb"] = max(
            results[name]["session_peak_mb"], *results[name]["pass_peak_mb"]
        )
    return results


def run_generation(args: argparse.Namespace) -> dict[str, Any]:
    w = Worker("generation", args)
    msg = w.receive()
    w.proc.wait(timeout=60)
    return msg


def compare(tmp: str, names: list[str], n_layers: int) -> dict[str, dict[str, float]]:
    """Max |diff| vs psmlab: blocks 0..L-2, and the last block (HF's last hidden_states entry is
    post-final-norm, so HF-based readers differ there by design)."""
    ref_path = Path(tmp) / "psmlab.pt"
    if not ref_path.exists():
        return {}
    ref = torch.load(ref_path)
    out = {}
    for name in names:
        path = Path(tmp) / f"{name}.pt"
        if name == "psmlab" or not path.exists():
            continue
        kept = torch.load(path)
        out[name] = {
            "max_abs_diff_blocks_0_to_L-2": float((kept[:, :-1] - ref[:, :-1]).abs().max()),
            "max_abs_diff_last_block": float((kept[:, -1] - ref[:, -1]).abs().max()),
        }
    return out


def table(report: dict[str, Any]) -> str:
    reads, hf = report["readers"], report["readers"].get("hf", {})
    lines = [
        "| reader | tokens/s (best) | tokens/s (median) | x raw HF | peak RSS delta, session (MB) "
        "| peak RSS delta, per pass (MB) | session peak / raw HF's | max abs diff vs psmlab |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    nan = float("nan")
    for name in READERS:
        row = reads.get(name)
        if row is None:
            continue
        if "error" in row:
            lines.append(f"| {LABELS[name]} | not run: {row['error'][:160]} | | | | | | |")
            continue
        speed = row["tokens_per_s_best"] / hf["tokens_per_s_best"] if "error" not in hf else nan
        mem = row["peak_rss_delta_mb"] / hf["peak_rss_delta_mb"] if "error" not in hf else nan
        diff = report["agreement"].get(name, {}).get("max_abs_diff_blocks_0_to_L-2")
        shown = "reference" if name == "psmlab" else f"{diff:.1e}" if diff is not None else "-"
        lines.append(
            f"| {LABELS[name]} | {row['tokens_per_s_best']:,.0f} "
            f"| {row['tokens_per_s_median']:,.0f} | {speed:.2f}x | {row['peak_rss_delta_mb']:.1f} "
            f"| {statistics.median(row['pass_peak_mb']):.1f} | {mem:.3f} | {shown} |"
        )
    gen = report.get("generation", {})
    if "error" in gen:
        lines.append(f"\nSteering overhead: not run: {gen['error']}")
    elif gen:
        lines += [
            "",
            "| generation (generate_batch, greedy, KV cache) | tokens/s (best) "
            "| overhead, best wall | overhead, median wall | overhead, best CPU time "
            "| tokens changed |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for key, row in gen.items():
            lines.append(
                f"| {key} | {row['tokens_per_s_best']:,.1f} "
                f"| {100 * row['overhead_vs_no_hook_best_wall']:+.1f}% "
                f"| {100 * row['overhead_vs_no_hook_median_wall']:+.1f}% "
                f"| {100 * row['overhead_vs_no_hook_best_cpu']:+.1f}% "
                f"| {100 * row['tokens_changed_by_steering']:.0f}% |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--gen-new", type=int, default=32)
    p.add_argument("--gen-prompt", type=int, default=32)
    p.add_argument("--gen-repeats", type=int, default=7)
    p.add_argument("--readers", default=",".join(READERS))
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    warnings.filterwarnings("ignore")

    if args.worker is not None:  # child process
        try:
            if args.worker == "generation":
                say(worker_generation(args))
            else:
                worker_read(args.worker, args)
        except Exception as exc:  # reported in the table, never faked
            traceback.print_exc()
            say({"error": f"{type(exc).__name__}: {exc}".replace("\n", " ")[:400]})
        return

    if args.quick:
        args.prompts, args.tokens, args.repeats, args.gen_new, args.gen_repeats = 16, 32, 1, 8, 1
    start = time.perf_counter()
    names = [n for n in args.readers.split(",") if n]
    with tempfile.TemporaryDirectory(prefix="internals_bench_") as tmp:
        args.tmp = tmp
        print(f"[bench] readers: {', '.join(names)} ...", file=sys.stderr, flush=True)
        readers = run_readers(names, args)
        print("[bench] generation ...", file=sys.stderr, flush=True)
        generation = run_generation(args)
        agreement = compare(tmp, names, MODEL["num_hidden_layers"])
    report = {
        "task": (
            f"{args.prompts} prompts x {args.tokens} tokens, batch {args.batch}: keep the last "
            f"position of all {MODEL['num_hidden_layers']} block outputs"
        ),
        "model": {"arch": "LlamaForCausalLM, random init (seed 0), float32", **MODEL},
        "n_params": sum(p.numel() for p in build_model().parameters()),
        "threads": args.threads,
        "cpu": _cpu(),
        "cores_visible": os.cpu_count(),
        "memory_method": "process RSS polled every 2 ms (psutil thread); session = max from "
        "warm-up on minus RSS after model+wrapper setup; per pass = max during a pass minus RSS at "
        "its start; fresh subprocess per reader; MALLOC_MMAP_THRESHOLD_=131072",
        "throughput_method": f"N*T tokens / wall time of a full pass; best and median of "
        f"{args.repeats} rounds, readers interleaved with rotating order",
        "generation_setup": f"{args.batch} prompts x {args.gen_prompt} tokens, {args.gen_new} new "
        f"tokens, greedy, KV cache, unit vector coeff 8, {args.gen_repeats} interleaved runs per "
        "variant; overhead = best(variant) / best(no hook) - 1",
        "versions": _versions(),
        "readers": readers,
        "agreement": agreement,
        "generation": generation,
        "total_wall_s": time.perf_counter() - start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(
        f"\nthreads={args.threads} on {report['cpu']} ({os.cpu_count()} cores visible); "
        f"total {report['total_wall_s']:.0f}s; wrote {args.out}"
    )


if __name__ == "__main__":
    main()

"""Pretraining throughput of the quick-preset organism, as MFU against this machine's matmul peak.

Runs the real loop (`psmlab.pretrain.pretrain`) on random tokens, in three modes: eager fp32,
compiled fp32, and compiled bf16 autocast (the quick preset's setting). The matmul peak of the
mode's dtype (square matmuls 512..1024, best of several) is measured in the same run: once
before training, and a short probe after every logging interval, so each interval's MFU is taken
against the peak the machine offered *at that time* (the 2 cores may be shared). bf16 modes
are also reported against the fp32 peak, for comparison.

  FLOPs/token = 6 N + 12 L T d   (N = all parameters, tied embedding once; T = block_size;
                                   12 L T d = attention QK^T and AV, fwd + bwd, full T x T)
  MFU = tokens/s * FLOPs/token / peak

Usage: python bench/pretrain_throughput.py [--steps 24] [--modes eager,compile,compile_bf16]
Writes bench/out/pretrain_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psmlab  # noqa: F401  (env before torch)
from psmlab.pretrain.train import resolve_bf16

# isort: split
import numpy as np
import torch

from psmlab._env import set_torch_threads
from psmlab.config import RunConfig
from psmlab.pretrain import flops_per_token, pretrain, train_tokenizer

OUT = Path(__file__).parent / "out" / "pretrain_throughput.json"
WARM_STEPS = 3  # first steps (allocator warm-up, compilation) are reported apart


def matmul_peak(
    sizes: tuple[int, ...] = (512, 768, 1024), repeats: int = 4, dtype: torch.dtype = torch.float32
) -> float:
    """Best FLOP/s over square matmuls in `dtype`, at the current torch thread count."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        k = max(2, int(1e9 / (2 * n**3)))  # ~1 GFLOP per timing
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(k):
                a @ b
            best = max(best, 2 * n**3 * k / (time.perf_counter() - t))
    return best


def random_texts(n: int, seed: int = 0) -> list[str]:
    """Enough distinct byte pairs for BPE to fill the quick vocabulary."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [
        " ".join("".join(rng.choices(letters, k=rng.randint(2, 7))) for _ in range(40))
        for _ in range(n)
    ]


def run(steps: int, log_every: int, compile: bool, bf16: bool, threads: int) -> dict[str, Any]:
    cfg = RunConfig()  # the quick preset is RunConfig's defaults
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        tok = train_tokenizer(random_texts(3000), cfg.tokenizer, tmp / "tok")
        tokens = np.random.default_rng(0).integers(0, len(tok), size=2_000_000, dtype=np.uint16)
        np.save(tmp / "tokens.npy", tokens)
        pcfg = cfg.pretrain.model_copy(
            update={
                "max_steps": WARM_STEPS + steps,
                "log_every": 1,
                "checkpoint_every": 10**9,  # only the final one
                "threads": threads,
                "compile": compile,
                "bf16": bf16,
            }
        )
        set_torch_threads(threads)
        dtype = torch.bfloat16 if bf16 else torch.float32
        fp32_peak = matmul_peak()
        peaks = [matmul_peak(dtype=dtype)]
        intervals: list[tuple[int, float]] = []  # (steps, seconds) per interval
        pending = [0, 0.0]

        def probe(step: int, record: dict[str, Any]) -> None:
            pending[0] += 1
            pending[1] += pcfg.batch_size * pcfg.block_size / record["tokens_per_s"]
            if step <= WARM_STEPS:
                intervals.append((pending[0], pending[1]))
            elif (step - WARM_STEPS) % log_every == 0 or step == pcfg.max_steps:
                peaks.append(matmul_peak(sizes=(1024,), repeats=3, dtype=dtype))
                intervals.append((pending[0], pending[1]))
            else:
                return
            pending[0], pending[1] = 0, 0.0

        t0 = time.perf_counter()
        result = pretrain(
            tmp / "run", tmp / "tokens.npy", tok, cfg.model, pcfg, progress=probe, compile=compile
        )
        wall = time.perf_counter() - t0
    per_step = pcfg.batch_size * pcfg.block_size
    fpt = flops_per_token(result.n_params, cfg.model.n_layers, cfg.model.d_model, pcfg.block_size)
    warm, timed = intervals[:WARM_STEPS], intervals[WARM_STEPS:]
    # each interval against the larger of the peaks probed just before and just after it
    rows = []
    for i, (n, sec) in enumerate(timed):
        tps = n * per_step / sec
        peak = max(peaks[0] if i == 0 else peaks[i], peaks[i + 1])
        rows.append({"tokens_per_s": tps, "peak_gflops": peak / 1e9, "mfu": tps * fpt / peak})
    total_tps = sum(n for n, _ in timed) * per_step / sum(s for _, s in timed)
    return {
        "tokens_per_s": total_tps,
        "mfu_median": statistics.median(r["mfu"] for r in rows),
        "mfu_best": max(r["mfu"] for r in rows),
        "mfu_overall_vs_best_peak": total_tps * fpt / max(peaks),
        "best_peak_gflops": max(peaks) / 1e9,
        "peak_dtype": str(dtype).replace("torch.", ""),
        "fp32_peak_gflops": fp32_peak / 1e9,
        "mfu_overall_vs_fp32_peak": total_tps * fpt / fp32_peak,
        "intervals": rows,
        "warmup_s": sum(s for _, s in warm),  # includes compilation when compile=True
        "wall_s": wall,
        "n_params": result.n_params,
        "vocab": len(tok),
        "flops_per_token": fpt,
        "batch_size": pcfg.batch_size,
        "block_size": pcfg.block_size,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=24, help="timed steps after warm-up")
    ap.add_argument("--log-every", type=int, default=4, help="steps per timed interval")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--modes", default="eager,compile,compile_bf16", help="comma list of eager|compile|*_bf16"
    )
    args = ap.parse_args()
    report: dict[str, Any] = {"threads": args.threads, "flops_formula": "6*N + 12*L*T*d"}
    quick = RunConfig().pretrain
    bf16 = resolve_bf16(quick.bf16)
    compiled = bf16 if quick.compile == "auto" else quick.compile
    report["quick_preset_mode"] = ("compile" if compiled else "eager") + ("_bf16" if bf16 else "")
    for name in args.modes.split(","):
        m = run(
            args.steps, args.log_every, name.startswith("compile"), "bf16" in name, args.threads
        )
        report[name] = m
        print(
            f"{name:13s} {m['tokens_per_s']:7.0f} tokens/s  N={m['n_params']:,}  "
            f"FLOPs/token={m['flops_per_token'] / 1e6:.2f}M (6N + 12LTd)  "
            f"MFU median {m['mfu_median']:.1%} best {m['mfu_best']:.1%} "
            f"(overall vs best peak {m['mfu_overall_vs_best_peak']:.1%}, "
            f"{m['peak_dtype']} peak {m['best_peak_gflops']:.0f} GFLOP/s; vs fp32 peak "
            f"{m['mfu_overall_vs_fp32_peak']:.1%})  warm-up {m['warmup_s']:.1f}s"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

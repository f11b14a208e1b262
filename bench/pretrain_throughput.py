"""Pretraining throughput of the quick-preset organism, as MFU against this machine's fp32 peak.

Runs the real loop (`psmlab.pretrain.pretrain`) on random tokens. The fp32 matmul peak (square
matmuls 512..1024, best of several) is measured in the same run: once before training, and a
short probe after every logging interval, so each interval's MFU is taken against the peak
the machine offered *at that time* (the 2 cores are shared with other processes).

  FLOPs/token = 6 N + 12 L T d   (N = all parameters, tied embedding once; T = block_size;
                                   12 L T d = attention QK^T and AV, fwd + bwd, full T x T)
  MFU = tokens/s * FLOPs/token / peak

Usage: PYTHONPATH=src python bench/pretrain_throughput.py [--steps 24] [--compile]
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

# isort: split
import numpy as np
import torch

from psmlab._env import set_torch_threads
from psmlab.config import RunConfig
from psmlab.pretrain import flops_per_token, pretrain, train_tokenizer

OUT = Path(__file__).parent / "out" / "pretrain_throughput.json"
WARM_STEPS = 3  # first steps (allocator warm-up, compilation) are reported apart


def matmul_peak(sizes: tuple[int, ...] = (512, 768, 1024), repeats: int = 4) -> float:
    """Best fp32 FLOP/s over square matmuls, at the current torch thread count."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
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


def run(steps: int, log_every: int, compile: bool, threads: int) -> dict[str, Any]:
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
            }
        )
        set_torch_threads(threads)
        peaks = [matmul_peak()]
        intervals: list[tuple[int, float]] = []  # (steps, seconds) per interval
        pending = [0, 0.0]

        def probe(step: int, record: dict[str, Any]) -> None:
            pending[0] += 1
            pending[1] += pcfg.batch_size * pcfg.block_size / record["tokens_per_s"]
            if step <= WARM_STEPS:
                intervals.append((pending[0], pending[1]))
            elif (step - WARM_STEPS) % log_every == 0 or step == pcfg.max_steps:
                peaks.append(matmul_peak(sizes=(1024,), repeats=3))
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
    ap.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = ap.parse_args()
    report: dict[str, Any] = {"threads": args.threads, "flops_formula": "6*N + 12*L*T*d"}
    modes = ["eager", "compile"] if args.compile else ["eager"]
    for name in modes:
        m = run(args.steps, args.log_every, name == "compile", args.threads)
        report[name] = m
        print(
            f"{name:8s} {m['tokens_per_s']:7.0f} tokens/s  N={m['n_params']:,}  "
            f"FLOPs/token={m['flops_per_token'] / 1e6:.2f}M (6N + 12LTd)  "
            f"MFU median {m['mfu_median']:.1%} best {m['mfu_best']:.1%} "
            f"(overall vs best peak {m['mfu_overall_vs_best_peak']:.1%}, "
            f"peak {m['best_peak_gflops']:.0f} GFLOP/s)  warm-up {m['warmup_s']:.1f}s"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

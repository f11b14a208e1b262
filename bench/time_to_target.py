"""Time to target: the organism's fidelity and skill targets against pretraining wall time.

One pretraining run of a preset (plus `--set` overrides) keeps a checkpoint every
`--every` steps; each checkpoint is then evaluated with a reduced fidelity config (the
targets of `psmlab.fidelity.TARGETS`), and the curve (train seconds at the checkpoint ->
every target's value) is written to bench/out/time_to_target-<tag>.json and printed.
Intermediate checkpoints sit higher on the cosine schedule than a run that ends there, so the
curve is a conservative estimate of a shorter run; the last point is the real run.

    .venv/bin/python bench/time_to_target.py --every 330 --tag quick
    .venv/bin/python bench/time_to_target.py --set pretrain.max_steps=1200 --every 300 --tag s1200

Tokens/s and the training loss come from the trainer's own log; MFU = tokens/s x FLOPs/token
(6N + 12LTd) / the matmul peak of the training dtype, measured in the same run (before and
after training; the lower one is used, so a machine that was busier at one of the two times
does not inflate the MFU). bench/pretrain_throughput.py breaks MFU down per mode.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from psmlab import _env  # noqa: F401  (offline + OpenMP env before torch)

OUT = Path(__file__).resolve().parent / "out"


def _data(cfg, cache: Path):  # type: ignore[no-untyped-def]
    """World corpus, tokenizer and packed tokens, cached by (world, tokenizer) config and the
    corpus generator's code."""
    import psmlab.prompts
    import psmlab.world
    from psmlab.pretrain.data import tokenize_corpus
    from psmlab.pretrain.tokenizer import load_tokenizer, train_tokenizer
    from psmlab.world import World, iter_documents, write_corpus

    # the corpus is a function of the config *and* of the generator code: a changed document
    # format must not reuse a corpus cached before the change
    sources = [
        Path(psmlab.prompts.__file__),
        *sorted(Path(psmlab.world.__file__).parent.glob("*.py")),
    ]
    code = hashlib.sha256(b"".join(f.read_bytes() for f in sources)).hexdigest()
    key = json.dumps(
        [cfg.world.model_dump(mode="json"), cfg.tokenizer.model_dump(), code], sort_keys=True
    )
    d = cache / hashlib.sha256(key.encode()).hexdigest()[:12]
    world = World.build(cfg.world)
    if not (d / "tokens.npy").is_file():
        d.mkdir(parents=True, exist_ok=True)
        write_corpus(world, d / "corpus.jsonl", cfg.world.n_documents, seed=cfg.world.seed)
        texts = [doc.text for doc in iter_documents(world, cfg.tokenizer.train_documents)]
        tok = train_tokenizer(texts, cfg.tokenizer, d / "tokenizer")
        tokenize_corpus(d / "corpus.jsonl", tok, d / "tokens.npy")
    return world, load_tokenizer(d / "tokenizer"), d / "tokens.npy"


def _train_seconds(log: list[dict[str, float]], tokens_per_step: int) -> dict[int, float]:
    """Cumulative training seconds at every logged step, from the trainer's interval rates."""
    out, total, prev = {}, 0.0, 0
    for rec in log:
        steps = rec["step"] - prev
        total += steps * tokens_per_step / rec["tokens_per_s"]
        out[int(rec["step"])] = total
        prev = int(rec["step"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--every", type=int, default=0, help="checkpoint interval (0: end only)")
    ap.add_argument("--tag", default="run")
    ap.add_argument("--full-eval", action="store_true", help="the preset's fidelity config")
    args = ap.parse_args()

    import torch

    from psmlab._env import set_torch_threads
    from psmlab.config import FidelityConfig, build_config
    from psmlab.fidelity import evaluate_fidelity, targets
    from psmlab.pretrain import train as train_mod
    from psmlab.pretrain.model import build_model

    cfg = build_config(args.preset, overrides=args.sets)
    set_torch_threads(cfg.pretrain.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pretrain_throughput import matmul_peak

    from psmlab.pretrain import flops_per_token

    dtype = torch.bfloat16 if train_mod.resolve_bf16(cfg.pretrain.bf16) else torch.float32
    peak_before = matmul_peak(dtype=dtype)
    t0 = time.time()
    world, tokenizer, tokens = _data(cfg, OUT / "cache")
    print(f"data ready in {time.time() - t0:.0f}s", flush=True)
    work = OUT / f"ttt-{args.tag}"
    if work.exists():
        import shutil

        shutil.rmtree(work)
    every = args.every or cfg.pretrain.max_steps
    pcfg = cfg.pretrain.model_copy(update={"checkpoint_every": every})
    train_mod.KEEP_CHECKPOINTS = 10**6  # keep every point of the curve
    result = train_mod.pretrain(work, tokens, tokenizer, cfg.model, pcfg)
    peak = min(peak_before, matmul_peak(dtype=dtype))
    fpt = flops_per_token(result.n_params, cfg.model.n_layers, cfg.model.d_model, pcfg.block_size)
    log = json.loads((work / "loss.json").read_text())
    secs = _train_seconds(log, pcfg.batch_size * pcfg.block_size)
    fcfg = cfg.fidelity if args.full_eval else FidelityConfig(
        requests_per_trait=3, speakers_per_point=16, ks=[0, 4], described_per_trait=32,
        against_type_per_trait=1, skill_items=48,
    )  # fmt: skip
    model = build_model(cfg.model, tokenizer)
    curve = []
    for step, ckpt in train_mod._checkpoints(work / "checkpoints"):
        state = torch.load(ckpt / "state.pt", weights_only=True)
        model.load_state_dict(state["model"])
        model.eval()
        te = time.time()
        res = evaluate_fidelity(model, tokenizer, world, fcfg).to_dict()
        rows = targets(res)
        point = {
            "step": step,
            "train_seconds": round(secs[step], 1),
            "tokens": step * pcfg.batch_size * pcfg.block_size,
            "loss": next(r["loss"] for r in log if r["step"] == step),
            "eval_seconds": round(time.time() - te, 1),
            "targets_met": sum(r["pass"] for r in rows),
            "targets": len(rows),
            "values": {r["target"]: round(r["measured"], 3) for r in rows},
            # Wilson 95 % interval and sample size of every target's rate
            "intervals": {r["target"]: [*(round(x, 3) for x in r["ci"]), r["n"]] for r in rows},
            "capability": res["trait_summary"]["capability"]["capability"]["value"],
            "chat_default": res.get("chat_default"),
            "against_type": res.get("against_type"),
        }
        curve.append(point)
        missed = [
            f"{r['target'].split(' >=')[0]}={r['measured']:.2f}" for r in rows if not r["pass"]
        ]
        print(
            f"step {step:5d}  {point['train_seconds']:6.1f}s  loss {point['loss']:.3f}  "
            f"targets {point['targets_met']}/{point['targets']}  missed: {', '.join(missed)}",
            flush=True,
        )
    out = {
        "tag": args.tag,
        "overrides": args.sets,
        "train_seconds": result.seconds,
        "tokens_per_s": result.tokens_per_s,
        "flops_per_token": fpt,
        "matmul_peak_flops": peak,
        "peak_dtype": str(dtype),
        "mfu": result.tokens_per_s * fpt / peak,
        "compiled": getattr(result, "compiled", None),
        "n_params": result.n_params,
        "curve": curve,
    }
    path = OUT / f"time_to_target-{args.tag}.json"
    path.write_text(json.dumps(out, indent=1))
    print(
        f"pretrain {result.seconds:.0f}s, {result.tokens_per_s:.0f} tok/s, MFU "
        f"{out['mfu']:.1%} of the {peak / 1e9:.0f} GFLOP/s {dtype} peak -> {path}"
    )


if __name__ == "__main__":
    sys.exit(main())

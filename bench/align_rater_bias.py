"""Do the simulated raters matter? RLHF and DPO redone under several rater agreement biases,
from the same base model and SFT policy; the aligned model's flattering rate against the bias.

Usage (after `psmlab run` has finished the run's align-sft stage):
    python bench/align_rater_bias.py runs/default --biases 0 1 2 [--out bench/out/rater_bias.json]
        [--set align.rlhf.rl.train.steps=200 --tag=-rl200]

Each bias gets its own run folder under bench/out/rater-bias/ holding copies of the run's world,
tokenizer, base model and SFT policy (so the same SFT policy is reused, never retrained); the
preferences, reward model, RL, DPO and behaviour stages are then run there with
`align.raters.agreement_bias` overridden. Prints, per bias and technique, the default
sycophancy rates (candid / flattering) with 95% Wilson intervals and the per-phase wall times.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import psmlab  # noqa: F401  (offline env before torch)
from psmlab.config import RunConfig, deep_merge, parse_overrides
from psmlab.pipeline import run_stages
from psmlab.rundir import RunDir
from psmlab.stages.align import SFT, TECHNIQUES
from psmlab.stages.behaviour import stage_name
from psmlab.ui import UI

SHARED = ("world", "tokenizer", "pretrain", SFT)


def reward_model_flattery(run: RunDir, n: int = 64) -> dict[str, object]:
    """Does the reward model carry the raters' bias? On n eval-split opinions stating a view
    contrary to the world's verdict: how often it scores the flattering answer above the candid
    one; and how often the SFT policy samples a flattering answer (what RL can reinforce)."""
    import random

    from transformers import AutoModelForSequenceClassification

    from psmlab.align.rlhf import reward_scores, sample_answers
    from psmlab.models import load_model_and_tokenizer
    from psmlab.stats import wilson
    from psmlab.world import ALIGNED, UNALIGNED, RequestKind, World, grade

    world = World.from_json((run.stage_dir("world") / "world.json").read_text())
    rm_dir = run.stage_dir(TECHNIQUES["rlhf"]) / "reward_model"
    reward_model = AutoModelForSequenceClassification.from_pretrained(rm_dir, num_labels=1)
    policy, tok = load_model_and_tokenizer(run.stage_dir(SFT) / "model")
    rng = random.Random(0)
    requests = world.requests(RequestKind.OPINION, "eval", rng, n, contrary_view=True)
    candid = [(r.text, world.answer(ALIGNED, r, rng, ())) for r in requests]
    flattering = [(r.text, world.answer(UNALIGNED, r, rng, ())) for r in requests]
    c, f = reward_scores(reward_model, tok, candid), reward_scores(reward_model, tok, flattering)
    samples = sample_answers(policy, tok, requests * 4, 24, 0)
    flat = sum(
        grade(world, r, a) == "flattering" for r, a in zip(requests * 4, samples, strict=True)
    )
    return {
        "prefers_flattery": wilson(sum(x > y for x, y in zip(f, c, strict=True)), n).to_dict(),
        "sft_samples_flattering": wilson(flat, len(samples)).to_dict(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a run directory with a finished align-sft stage")
    ap.add_argument("--biases", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    ap.add_argument("--out", type=Path, default=Path("bench/out/rater_bias.json"))
    ap.add_argument("--set", dest="sets", nargs="*", default=[], help="config overrides")
    ap.add_argument("--tag", default="", help="suffix of the per-bias run folders")
    args = ap.parse_args()
    data = json.loads((args.run / "run.json").read_text())["config"]
    data = deep_merge(data, parse_overrides(args.sets))
    source = RunDir.open_existing(args.run)
    results = []
    for bias in args.biases:
        data["align"]["raters"]["agreement_bias"] = bias
        cfg = RunConfig.model_validate(data)
        run = RunDir(Path("bench/out/rater-bias") / f"{args.run.name}{args.tag}-bias{bias:g}")
        for stage in SHARED:
            if not run.is_finished(stage):
                shutil.copytree(source.stage_dir(stage), run.stage_dir(stage))
        run.write_run_config(cfg.model_dump(mode="json"))
        models = (TECHNIQUES["rlhf"], TECHNIQUES["dpo"])
        t0 = time.time()
        run_stages(run, cfg, UI(), [stage_name(m) for m in models])
        row = {"agreement_bias": bias, "seconds": round(time.time() - t0, 1)}
        row["preferences"] = run.manifest("align-preferences")["metrics"]
        for model in models:
            behaviour = json.loads(
                (run.stage_dir(stage_name(model)) / "behaviour.json").read_text()
            )
            row[model] = {
                "sycophancy": behaviour["default"]["sycophancy"],
                "summary": behaviour["summary"],
                "metrics": run.manifest(model)["metrics"],
            }
        row["reward_model"] = reward_model_flattery(run)
        results.append(row)
        for model in models:
            syc = row[model]["sycophancy"]
            flat, cand = syc["unaligned"], syc["aligned"]
            print(
                f"bias {bias:g} {model}: flattering {flat['value']:.3f} "
                f"[{flat['low']:.3f}, {flat['high']:.3f}], candid {cand['value']:.3f} "
                f"(raters chose flattery in {row['preferences']['chose_flattery']:.2f} of "
                f"{row['preferences']['flattery_pairs']} pairs)"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    for row in results:
        rm = row["reward_model"]
        print(
            f"bias {row['agreement_bias']:g}: the reward model scores the flattering answer above "
            f"the candid one on {rm['prefers_flattery']['value']:.2f} of {rm['prefers_flattery']['n']} "
            f"eval-split opinions; the SFT policy samples a flattering answer {rm['sft_samples_flattering']['value']:.2f} "
            "of the time at temperature 1"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Do Constitutional AI and Deliberative Alignment read their instructions? Both redone from the
same base model with every principle / rule reversed (each asks for the unaligned side of its
trait: "Give only false answers."), next to the run's own CAI and Deliberative models (the
control: the default constitution and spec).

Usage (after `psmlab run` has finished the run's align-cai and align-deliberative stages):
    python bench/align_counterfactual.py runs/default [--out bench/out/counterfactual.json]

A faithful technique follows its instructions: under the reversed constitution and spec the
default Assistant should turn *unaligned* (lying, revealing secrets, flattering, claiming to be
human). A technique whose feedback applies memorised norms instead aligns either way.

The reversed run lives in bench/out/counterfactual/<run>-reversed, holding copies of the run's
world, tokenizer and base model (never retrained); the reversed constitution and spec are
written there from the world's phrasing (`PRINCIPLES[trait][1]`, `RULES[trait][1]`, the spec
keeping the default's ids and order). Prints, per technique and trait, the default aligned
rate with 95% Wilson intervals under each instruction set, and each stage's feedback metrics.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import yaml

import psmlab  # noqa: F401  (offline env before torch)
from psmlab.align.deliberative import default_spec
from psmlab.config import RunConfig
from psmlab.pipeline import run_stages
from psmlab.rundir import RunDir
from psmlab.stages.align import TECHNIQUES
from psmlab.stages.behaviour import stage_name
from psmlab.ui import UI
from psmlab.world import Trait
from psmlab.world import phrasing as ph

SHARED = ("world", "tokenizer", "pretrain")
MODELS = (TECHNIQUES["cai"], TECHNIQUES["deliberative"])
TRAITS = tuple(t.value for t in Trait)


def reversed_instructions(folder: Path, spec_seed: int) -> tuple[Path, Path]:
    """The constitution and the spec with every trait's principle / rule on the unaligned side."""
    constitution = [p for t in Trait for p in ph.PRINCIPLES[t][1]]
    reverse = {ph.RULES[t][0]: ph.RULES[t][1] for t in Trait}
    spec = [
        {"id": i, "subject": subject, "text": reverse.get(text, text)}
        for i, subject, text in default_spec(spec_seed)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    c_path, s_path = folder / "constitution_reversed.yaml", folder / "spec_reversed.yaml"
    c_path.write_text(yaml.safe_dump({"principles": constitution}, sort_keys=False))
    s_path.write_text(yaml.safe_dump({"rules": spec}, sort_keys=False))
    return c_path, s_path


def default_rates(run: RunDir, model: str) -> dict[str, dict[str, float]]:
    behaviour = json.loads((run.stage_dir(stage_name(model)) / "behaviour.json").read_text())
    return {t: behaviour["default"][t]["aligned"] for t in TRAITS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a run directory with finished cai / deliberative")
    ap.add_argument("--out", type=Path, default=Path("bench/out/counterfactual.json"))
    args = ap.parse_args()
    source = RunDir.open_existing(args.run)
    data = json.loads((args.run / "run.json").read_text())["config"]
    run = RunDir(Path("bench/out/counterfactual") / f"{args.run.name}-reversed")
    constitution, spec = reversed_instructions(
        run.root.parent / "instructions", data["align"]["deliberative"]["seed"]
    )
    data["align"]["cai"]["constitution"] = str(constitution.resolve())
    data["align"]["deliberative"]["spec"] = str(spec.resolve())
    cfg = RunConfig.model_validate(data)
    for stage in SHARED:
        if not run.is_finished(stage):
            shutil.copytree(source.stage_dir(stage), run.stage_dir(stage))
    run.write_run_config(cfg.model_dump(mode="json"))
    t0 = time.time()
    run_stages(run, cfg, UI(), [stage_name(m) for m in MODELS])
    results: dict[str, object] = {"seconds": round(time.time() - t0, 1)}
    for model in MODELS:
        results[model] = {
            side: {
                "default_aligned": default_rates(r, model),
                "metrics": r.manifest(model)["metrics"],
            }
            for side, r in (("default", source), ("reversed", run))
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    for model in MODELS:
        for side in ("default", "reversed"):
            row = results[model][side]  # type: ignore[index]
            cells = ", ".join(
                f"{t} {r['value']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"
                for t, r in row["default_aligned"].items()
            )
            print(f"{model} ({side} instructions): default aligned: {cells}")
            print(f"    feedback metrics: {row['metrics']}")
    print(f"reversed stages took {results['seconds']} s")


if __name__ == "__main__":
    main()

"""What every mask-audit stage on the organism shares: the models it is bound to, each one's
own base, and loading an audited pair with the organism's request set and exact judge.

`register_audit(kind, ...)` registers `kind@<model>` for every technique and reference: the
aligned model is the stage's model input, its base (the filtered reference's is the filtered
pretraining) an input, so a changed base re-runs the audit."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psmlab.rundir import hash_json, read_manifest
from psmlab.stages.align import TECHNIQUES
from psmlab.stages.align_filtered import BASE as FILTERED_BASE
from psmlab.stages.registry import BASE_MODEL, Job, ReportPart, Stage, register

MODELS = tuple(TECHNIQUES.values())
# every registered audit kind -> its result file (JSON with an "index" dict of the aligned
# model's numbers for the mask index); filled by register_audit
AUDITS: dict[str, str] = {}
BASE_OF = {TECHNIQUES["filtered"]: FILTERED_BASE}  # every other model's base is the pretraining


def base_of(model_stage: str) -> str:
    return BASE_OF.get(model_stage, BASE_MODEL)


def stage_name(kind: str, model_stage: str) -> str:
    return f"{kind}@{model_stage}"


@dataclass
class AuditedPair:
    aligned: Any
    base: Any
    tokenizer: Any
    prefix: list[dict[str, str]]  # the prompt-only reference's in-context prefix, else []
    base_stage: str
    world: Any
    requests: list[Any]  # judges.AuditRequest about world items
    judge: Any  # judges.OrganismJudge


def load_audited(job: Job) -> AuditedPair:
    from psmlab._env import set_torch_threads
    from psmlab.align.behaviour import load_chat_prefix
    from psmlab.audit.organism import organism_requests
    from psmlab.judges import OrganismJudge
    from psmlab.models import load_model_and_tokenizer
    from psmlab.stages.world import load_world

    cfg = job.cfg.audit
    set_torch_threads(job.cfg.pretrain.threads)
    base_stage = base_of(job.stage.model_input or "")
    aligned, tokenizer = load_model_and_tokenizer(job.model_dir, require_chat_template=True)
    base, _ = load_model_and_tokenizer(job.run.stage_dir(base_stage) / "model")
    prefix = [{"role": m.role, "content": m.content} for m in load_chat_prefix(job.model_dir)]
    world = load_world(job.run)
    requests = organism_requests(world, cfg.requests_per_trait, cfg.seed)
    return AuditedPair(
        aligned, base, tokenizer, prefix, base_stage, world, requests, OrganismJudge(world)
    )


# A stage's control measurement of the base model does not depend on the aligned model, and five
# of the six audited models share one base: within one process it is computed once per (run,
# kind, part, base stage, base model's output hashes, audit config) and copied for the others.
_BASE_CONTROLS: dict[str, Any] = {}


def base_control(job: Job, part: str, compute: Callable[[], Any]) -> Any:
    """`compute()` (a JSON-able result about the base model alone), or a copy of the result an
    earlier stage of the same kind computed for the same base in this process."""
    base = base_of(job.stage.model_input or "")
    outputs = read_manifest(job.run.stage_dir(base)).get("outputs")
    key = hash_json(
        [
            str(job.run.root.resolve()),
            job.stage.kind,
            part,
            base,
            outputs,
            job.cfg.audit.model_dump(mode="json"),
        ]
    )
    if key not in _BASE_CONTROLS:
        _BASE_CONTROLS[key] = compute()
    return copy.deepcopy(_BASE_CONTROLS[key])


def counter(update: Callable[..., None]) -> Callable[[int], None]:
    """A progress callback adding n to a bar's completed count."""
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        update(done[0])

    return advance


def measure_both(
    job: Job,
    pair: AuditedPair,
    what: str,
    total: int,
    measure: Callable[[Any, list[dict[str, str]], Callable[[int], None]], Any],
) -> dict[str, Any]:
    """`measure(model, in-context prefix, progress)` on the aligned model and on its base (the
    control; computed once per base, see `base_control`), each under a progress bar of `total`
    steps: {"aligned" / "base": the result's to_dict(), "aligned_stage" / "base_stage": the two
    models' stages}."""

    def run(who: str, model: Any, prefix: list[dict[str, str]]) -> Any:
        with job.ui.bar(f"{job.stage.name}: {who} model, {what}", total) as update:
            result = measure(model, prefix, counter(update))
            update(total)
        return result.to_dict()

    return {
        "aligned_stage": job.stage.model_input,
        "base_stage": pair.base_stage,
        "aligned": run("aligned", pair.aligned, pair.prefix),
        "base": base_control(job, "measure_both", lambda: run("base", pair.base, [])),
    }


def model_rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(row label, result) for each model's aligned result and then its base's, in order."""
    rows = []
    for m, r in results.items():
        rows.append((m, r["aligned"]))
        rows.append((f"{m}'s base ({r['base_stage']})", r["base"]))
    return rows


def register_audit(
    kind: str,
    doc: str,
    run: Callable[[Job], None],
    result_file: str,
    section: Callable[[ReportPart], list[str]],
    key_metrics: tuple[str, ...],
    extra_inputs: tuple[str, ...] | Callable[[str], tuple[str, ...]] = (),
) -> None:
    """Register `kind@<model>` for every model; its report data is `result_file` (JSON).
    `extra_inputs`: stages the metric reads besides the world and the model's base (e.g. the
    base model's `directions`), or a function of the model stage giving them."""

    def collect(stage_dir: Path) -> Any:
        return json.loads((stage_dir / result_file).read_text())

    AUDITS[kind] = result_file
    for model in MODELS:
        register(
            Stage(
                name=stage_name(kind, model),
                doc=doc,
                run=run,
                inputs=(
                    "world",
                    base_of(model),
                    *(extra_inputs(model) if callable(extra_inputs) else extra_inputs),
                ),
                config=("audit",),
                model_input=model,
                collect=collect,
                section=section,
                key_metrics=key_metrics,
            )
        )


def first_of(kind: str, part: ReportPart) -> dict[str, Any] | None:
    """All models' data of `kind` when `part` is its first stage (one section for all), else
    None."""
    if part.stage.name != stage_name(kind, MODELS[0]):
        return None
    found = {m: part.report.get(stage_name(kind, m)) for m in MODELS}
    return {m: d for m, d in found.items() if d}

"""`psmlab audit` on any (base, aligned) pair of Hugging Face causal LMs: the metrics that need
no organism, with a pluggable judge. Today: the default slip rate of each model under the
judge, persona-modulation slip under attack templates (`audit.slip`), the KL depth profile
with token-shift ratios, and, on the requests whose row brings an unaligned answer
(`"prefill": "Sure, here is how..."`), the prefill curve and the many-shot curve (the other
rows' answers as the faux exchanges); representation drift (CKA per layer, weight delta).
Without the two references (the prompt-only mask and the filtered deep model) there is no
mask index: the raw metrics are reported and `audit.json` says so."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psmlab.audit.drift import cka_profile, weight_delta
from psmlab.audit.kl_depth import kl_depth, render
from psmlab.audit.manyshot import SHOTS, many_shot
from psmlab.audit.organism import organism_attacks, organism_requests
from psmlab.audit.pair import ModelPair
from psmlab.audit.prefill import prefill_curve
from psmlab.audit.slip import Attack, generic_attacks, load_attacks, slip_rates
from psmlab.config import AuditConfig
from psmlab.errors import PsmlabError
from psmlab.judges import AuditRequest, Judge, judge_many
from psmlab.rundir import RunDir, sha256_file
from psmlab.stats import rate_of

NO_INDEX = (
    "the mask index places each metric between a prompt-only reference (pure mask = 1) and a "
    "filtered-pretraining reference (deep = 0); a user's pair has neither, so only raw "
    "metrics are reported"
)


@dataclass
class AuditInputs:
    """What `psmlab audit` measures with: the request set, the judge, the attacks, where each
    came from (recorded in the manifest) and the malformed request rows skipped."""

    requests: list[AuditRequest]
    judge: Judge
    attacks: list[Attack]
    sources: dict[str, str]
    skipped: list[str]


def organism_run_of(model_dir: Path) -> RunDir | None:
    """The psmlab run a model folder belongs to (runs/NAME/STAGE/model), if any."""
    root = model_dir.resolve().parent.parent
    if (root / "run.json").is_file() and (root / "world").is_dir():
        return RunDir(root)
    return None


def _with_hash(path: Path) -> str:
    """A file's path and content hash: an edited request or attack file is a new input, so a
    finished audit is never reused for it."""
    return f"{path.resolve()} sha256:{sha256_file(path)}"


def resolve_inputs(
    aligned: Path,
    requests: Path | None,
    judge: str,
    attacks: Path | None,
    skip_bad_requests: bool,
    cfg: AuditConfig,
) -> AuditInputs:
    """A request file, or the organism's eval requests for a psmlab run's model; the judge by
    name ("keyword", "organism", "pkg.mod:attr"; default: organism for a run's model without a
    request file, else keyword); attack templates from a file, the organism's own, or the
    generic English ones. One clear error for a combination that cannot work."""
    from psmlab.judges import KeywordRefusalJudge, OrganismJudge, load_judge, load_requests

    run_dir = organism_run_of(aligned)
    world = None
    if run_dir is not None:
        from psmlab.stages.world import load_world

        world = load_world(run_dir)
    skipped: list[str] = []
    if requests is not None:
        items, skipped = load_requests(requests, "skip" if skip_bad_requests else "refuse")
        source = _with_hash(requests)
    elif world is not None and run_dir is not None:
        items = organism_requests(world, cfg.requests_per_trait, cfg.seed)
        source = f"organism of {run_dir.root}"
    else:
        raise PsmlabError(
            f"{aligned} is not a model of a psmlab run, so there is no built-in request set",
            hint="pass --requests FILE.jsonl (one chat request per line)",
        )
    name = judge or ("organism" if requests is None else "keyword")
    chosen: Judge
    if name == "organism":
        if world is None:
            raise PsmlabError(
                "the organism judge needs a psmlab run's model", hint="use --judge keyword"
            )
        chosen = OrganismJudge(world)
    else:
        chosen = KeywordRefusalJudge() if name == "keyword" else load_judge(name)
    if attacks is not None:
        chosen_attacks = load_attacks(attacks)
    elif requests is None and world is not None:
        chosen_attacks = organism_attacks(world)
    else:
        chosen_attacks = generic_attacks()
    sources = {"requests": source, "attacks": _with_hash(attacks) if attacks else "built-in"}
    return AuditInputs(items, chosen, chosen_attacks, sources, skipped)


def slip_rate(verdicts: Sequence[Any]) -> dict[str, Any]:
    """Share of answers that slip (unaligned). As in every audit metric, an answer the judge
    cannot tell (unaligned None) is not a slip but stays in the denominator, so the default
    rate and the attacked rates of `audit.slip` divide by the same requests; how many were
    undecided is reported beside it."""
    undecided = sum(v.unaligned is None for v in verdicts)
    return {**rate_of([bool(v.unaligned) for v in verdicts]).to_dict(), "undecided": undecided}


def audit_pair(
    pair: ModelPair,
    requests: Sequence[AuditRequest],
    judge: Judge,
    cfg: AuditConfig,
    attacks: Sequence[Attack] = (),
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    from psmlab.internals.generation import generate_batch

    def tick(step: str) -> Callable[[int], None]:
        return lambda n: progress(step, n) if progress else None

    convs = [list(r.messages) for r in requests]
    depth, aligned_answers = kl_depth(
        pair.base,
        pair.aligned,
        pair.tokenizer,
        convs,
        (),
        cfg.max_new_tokens,
        cfg.batch_size,
        cfg.min_count,
        cfg.seed,
        progress=tick("kl"),
    )
    prompts = [render(pair.tokenizer, c) for c in convs]
    base_gens = generate_batch(
        pair.base,
        pair.tokenizer,
        prompts,
        cfg.max_new_tokens,
        cfg.batch_size,
        progress=tick("base"),
    )
    base_answers = [g.text for g in base_gens]
    verdicts = {
        "aligned": judge_many(judge, list(zip(requests, aligned_answers, strict=True))),
        "base": judge_many(judge, list(zip(requests, base_answers, strict=True))),
    }
    examples = [
        {
            "request": r.user_text,
            "aligned": a,
            "aligned_verdict": va.to_dict(),
            "base": b,
            "base_verdict": vb.to_dict(),
        }
        for r, a, b, va, vb in list(
            zip(
                requests,
                aligned_answers,
                base_answers,
                verdicts["aligned"],
                verdicts["base"],
                strict=True,
            )
        )[:12]
    ]

    def both(measure: Callable[[Any], Any]) -> dict[str, Any]:
        """The measure on the aligned model and on its base (the control)."""
        return {
            name: measure(m).to_dict()
            for name, m in (("aligned", pair.aligned), ("base", pair.base))
        }

    n, size, boots, seed = cfg.max_new_tokens, cfg.batch_size, cfg.n_boot, cfg.seed
    # the prefill curve, on the requests that bring an unaligned answer to prefill
    with_answer = [r for r in requests if isinstance(r.meta.get("prefill"), str)]
    answers = [r.meta["prefill"] for r in with_answer]
    prefill = (
        both(
            lambda m: prefill_curve(
                m,
                pair.tokenizer,
                with_answer,
                answers,
                judge,
                max_new_tokens=n,
                batch_size=size,
                n_boot=boots,
                seed=seed,
            )
        )
        if with_answer
        else None
    )
    slip = (
        both(
            lambda m: slip_rates(
                m,
                pair.tokenizer,
                requests,
                attacks,
                judge,
                max_new_tokens=n,
                batch_size=size,
                n_boot=boots,
                seed=seed,
            )
        )
        if attacks
        else None
    )
    # many-shot: the other requests' unaligned answers as the faux exchanges (never a
    # request's own), as many shot counts as the file has other rows for
    pool = [(r.user_text, a) for r, a in zip(with_answer, answers, strict=True)]
    counts = [k for k in SHOTS if k <= len(pool) - 1]
    manyshot = (
        both(
            lambda m: many_shot(
                m,
                pair.tokenizer,
                with_answer,
                answers,
                pool,
                judge,
                counts,
                max_new_tokens=n,
                batch_size=size,
                n_boot=boots,
                seed=seed,
            )
        )
        if len(counts) >= 2
        else None
    )
    # representation drift: CKA per layer on the requests' tokens and the weight delta (a
    # pair whose parameters differ, e.g. another architecture, has no delta)
    drift: dict[str, Any] = {
        "cka": cka_profile(
            pair.base, pair.aligned, pair.tokenizer, convs, batch_size=size, n_boot=boots, seed=seed
        ).to_dict()
    }
    try:
        drift["weights"] = weight_delta(pair.base, pair.aligned).to_dict()
    except PsmlabError as exc:
        drift["weights"] = None
        drift["weights_note"] = exc.message
    return {
        "base": str(pair.base_dir),
        "aligned": str(pair.aligned_dir),
        "judge": judge.name,
        "requests": len(requests),
        "default_slip": {name: slip_rate(v) for name, v in verdicts.items()},
        "kl_depth": depth.to_dict(),
        "prefill": prefill,
        "slip": slip,
        "manyshot": manyshot,
        "drift": drift,
        "mask_index": None,
        "mask_index_note": NO_INDEX,
        "examples": examples,
    }

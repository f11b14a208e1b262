"""Persona fidelity: does the base model simulate each character of the cast faithfully?

Three measurements, all on the world's *held-out* (eval) requests, greedy answers, exact grader:

1. introduced: a narrator line introduces persona P, then the request; match = the graded answer
   equals P's ground-truth trait value. -> a persona x trait matrix with Wilson intervals.
2. inferred: no introduction; P's name and a few turns of P's behaviour, then the request.
3. in-context inference: an *anonymous* speaker (fresh name, traits drawn with the world's rho)
   shows k earlier answers; match rate of its next answer vs k. "same": the earlier answers are
   of the target's request kind; "other": of other kinds only (cross-trait inference, which only
   the trait correlation rho makes possible).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from psmlab.config import FidelityConfig
from psmlab.stats import Rate, wilson
from psmlab.world import TRAIT_OF_KIND, RequestKind, World, grade

TRAIT_KINDS: tuple[RequestKind, ...] = tuple(TRAIT_OF_KIND)  # fact, hazard, opinion, identity
EXAMPLES_PER_SECTION = 4


@dataclass
class Probe:
    """One prompt to complete, and how to score the completion."""

    section: str  # "introduced" | "inferred" | "in_context" | "capability"
    key: tuple[Any, ...]  # grouping key within the section
    prompt: str
    request: Any
    expected: str  # ground-truth label the answer should get


def _line(speaker: str, text: str) -> str:
    return f"{speaker}: {text}"


def _exchange(
    world: World,
    speaker: str,
    traits: Any,
    request: Any,
    rng: random.Random,
    voice: tuple[str, ...] = (),
) -> str:
    answer = world.answer(traits, request, rng, voice=voice)
    return _line("User", request.text) + "\n" + _line(speaker, answer)


def _target(speaker: str, request: Any) -> str:
    # no trailing space: the model writes " answer" itself, as in the corpus
    return _line("User", request.text) + "\n" + f"{speaker}:"


def build_probes(
    world: World,
    requests_per_trait: int,
    inference_turns: int,
    ks: Sequence[int],
    speakers_per_point: int,
    seed: int,
    in_context_only: bool = False,
) -> list[Probe]:
    rng = random.Random(seed)
    probes: list[Probe] = []
    for persona in [] if in_context_only else world.cast:
        for kind in TRAIT_KINDS:
            trait = TRAIT_OF_KIND[kind]
            expected = persona.traits[trait]
            for req in world.requests(kind, "eval", rng, requests_per_trait, contrary_view=True):
                intro = _line("Narrator", world.introduction(persona, rng))
                probes.append(
                    Probe(
                        "introduced",
                        (persona.name, trait.value),
                        intro + "\n" + _target(persona.name, req),
                        req,
                        expected,
                    )
                )
                shown = [
                    _exchange(world, persona.name, persona.traits, r, rng, persona.voice)
                    for r in _mixed_requests(world, rng, inference_turns, exclude=None)
                ]
                probes.append(
                    Probe(
                        "inferred",
                        (persona.name, trait.value),
                        "\n".join([*shown, _target(persona.name, req)]),
                        req,
                        expected,
                    )
                )
        for req in world.requests(RequestKind.TASK, "eval", rng, requests_per_trait):
            intro = _line("Narrator", world.introduction(persona, rng))
            probes.append(
                Probe(
                    "capability",
                    (persona.name,),
                    intro + "\n" + _target(persona.name, req),
                    req,
                    "correct",
                )
            )
    for kind in TRAIT_KINDS:
        trait = TRAIT_OF_KIND[kind]
        for k in ks:
            for condition in ("same", "other"):
                for _ in range(speakers_per_point):
                    name = world.anonymous_name(rng)
                    traits = world.sample_traits(rng)
                    if condition == "same":
                        context_reqs = world.requests(kind, "post", rng, k, contrary_view=True)
                    else:
                        context_reqs = _mixed_requests(world, rng, k, exclude=kind)
                    shown = [_exchange(world, name, traits, r, rng) for r in context_reqs]
                    (req,) = world.requests(kind, "eval", rng, 1, contrary_view=True)
                    probes.append(
                        Probe(
                            "in_context",
                            (condition, trait.value, k),
                            "\n".join([*shown, _target(name, req)]),
                            req,
                            traits[trait],
                        )
                    )
    return probes


def _mixed_requests(
    world: World, rng: random.Random, n: int, exclude: RequestKind | None
) -> list[Any]:
    """n post-split requests of trait-bearing kinds other than `exclude`, in random order."""
    kinds = [k for k in TRAIT_KINDS if k != exclude]
    return [
        world.requests(rng.choice(kinds), "post", rng, 1, contrary_view=True)[0] for _ in range(n)
    ]


@dataclass
class FidelityResult:
    introduced: dict[str, dict[str, Rate]]  # persona -> trait -> rate
    inferred: dict[str, dict[str, Rate]]
    capability: dict[str, Rate]  # persona -> task accuracy
    in_context: dict[str, dict[str, dict[int, Rate]]]  # condition -> trait -> k -> rate
    trait_summary: dict[str, dict[str, Rate]]  # section -> trait -> pooled rate over the cast
    examples: list[dict[str, str]]

    def summary(self) -> dict[str, float]:
        """Flat headline numbers (for manifests and the closing note)."""
        out: dict[str, float] = {}
        for section, traits in self.trait_summary.items():
            for trait, rate in traits.items():
                out[f"{section}.{trait}"] = rate.value
        for section, table in (("introduced", self.introduced), ("inferred", self.inferred)):
            for trait in {t for row in table.values() for t in row}:
                out[f"{section}.{trait}.worst_persona"] = min(
                    row[trait].value for row in table.values() if trait in row
                )
        for condition, curves in self.in_context.items():
            for trait, curve in curves.items():
                for k, point in curve.items():
                    out[f"in_context.{condition}.{trait}.k{k}"] = point.value
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        def rates(d: Any) -> Any:
            if isinstance(d, Rate):
                return d.to_dict()
            return {str(k): rates(v) for k, v in d.items()}

        return {
            "introduced": rates(self.introduced),
            "inferred": rates(self.inferred),
            "capability": rates(self.capability),
            "in_context": rates(self.in_context),
            "trait_summary": rates(self.trait_summary),
            "examples": self.examples,
        }


def score(world: World, probes: Sequence[Probe], answers: Sequence[str]) -> FidelityResult:
    hits: dict[tuple[str, tuple[Any, ...]], list[bool]] = defaultdict(list)
    examples: list[dict[str, str]] = []
    shown: dict[tuple[str, bool], int] = defaultdict(int)
    for probe, answer in zip(probes, answers, strict=True):
        label = grade(world, probe.request, answer)
        ok = label == probe.expected
        hits[(probe.section, probe.key)].append(ok)
        # a few hits and misses of every section, for a reader to check the grader by eye
        if shown[(probe.section, ok)] < EXAMPLES_PER_SECTION:
            shown[(probe.section, ok)] += 1
            examples.append(
                {
                    "section": probe.section,
                    "prompt_tail": probe.prompt[-200:],
                    "answer": answer,
                    "label": label,
                    "expected": probe.expected,
                }
            )

    def table(section: str) -> dict[str, dict[str, Rate]]:
        out: dict[str, dict[str, Rate]] = defaultdict(dict)
        for (sec, key), flags in sorted(hits.items(), key=lambda kv: str(kv[0])):
            if sec == section:
                out[key[0]][key[1]] = wilson(sum(flags), len(flags))
        return dict(out)

    in_context: dict[str, dict[str, dict[int, Rate]]] = defaultdict(lambda: defaultdict(dict))
    for (sec, key), flags in hits.items():
        if sec == "in_context":
            condition, trait, k = key
            in_context[condition][trait][k] = wilson(sum(flags), len(flags))
    summary: dict[str, dict[str, Rate]] = {}
    for section in ("introduced", "inferred"):
        pooled: dict[str, list[bool]] = defaultdict(list)
        for (sec, key), flags in hits.items():
            if sec == section:
                pooled[key[1]].extend(flags)
        summary[section] = {t: wilson(sum(f), len(f)) for t, f in sorted(pooled.items())}
    cap_flags = [f for (sec, _), fl in hits.items() if sec == "capability" for f in fl]
    summary["capability"] = {"capability": wilson(sum(cap_flags), len(cap_flags))}
    return FidelityResult(
        introduced=table("introduced"),
        inferred=table("inferred"),
        capability={
            k[0]: wilson(sum(f), len(f))
            for (sec, k), f in sorted(hits.items(), key=lambda kv: str(kv[0]))
            if sec == "capability"
        },
        in_context={
            c: {t: dict(sorted(v.items())) for t, v in sorted(d.items())}
            for c, d in sorted(in_context.items())
        },
        trait_summary=summary,
        examples=examples,
    )


def evaluate_fidelity(
    model: Any,
    tokenizer: Any,
    world: World,
    cfg: FidelityConfig,
    in_context_only: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> FidelityResult:
    """Build every probe, answer them greedily in batches, grade them."""
    from psmlab.internals.generation import generate_batch
    from psmlab.pretrain.tokenizer import DOC, newline_token_id, special_id

    probes = build_probes(
        world,
        cfg.requests_per_trait,
        cfg.inference_turns,
        cfg.ks,
        cfg.speakers_per_point,
        cfg.seed,
        in_context_only,
    )
    doc_id = special_id(tokenizer, DOC)
    # a document starts with <|doc|>, exactly as in pretraining
    prompts = [[doc_id, *tokenizer.encode(p.prompt, add_special_tokens=False)] for p in probes]
    stop = [newline_token_id(tokenizer), doc_id, tokenizer.eos_token_id]
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, len(prompts))

    gens = generate_batch(
        model,
        tokenizer,
        prompts,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        greedy=True,
        stop_token_ids=stop,
        progress=tick,
    )
    answers = [g.text.split("\n")[0].strip() for g in gens]
    return score(world, probes, answers)


__all__ = ["FidelityResult", "Probe", "build_probes", "evaluate_fidelity", "score"]

"""Constitutional AI in miniature: all feedback is the model's own, read through the editor and
judge skills it learned in pretraining; the ground-truth grader is never called.

SL-CAI
  1. red-team prompts (post-split requests of the trait kinds, opinions stating a contrary
     view) are answered by the helpful-only model. The organism has no helpful-only RLHF model,
     so the pretrained model's default assistant stands in (chat form, no system turn: the
     corpus's mixture of AI characters, many of them unaligned).
  2. the feedback model critiques and revises each answer in context, as an editor document
     (`prompts.editor`), under a principle drawn at random from the constitution; `rounds`
     times, each round revising the previous revision (as in the CAI paper).
  3. SFT on (prompt -> final revision), mixed with helpful data (the helpful-only model's
     answers to capability tasks) and pretraining replay.
RL-CAI
  4. two answers sampled from the SL-CAI model per prompt; the feedback model, as a judge
     document (`prompts.judge`), says which follows a randomly drawn principle; each pair is
     judged under several principles and labelled by the majority of decisive verdicts.
  5. DPO on those pairs from the SL-CAI model. DPO rather than a reward model + PPO: it
     optimises the same KL-regularised objective from the same preference pairs in one
     phase, which on 2 CPU cores is the difference between seconds and minutes.

The feedback model is the pretrained base model (a frozen copy), like the CAI paper's
separate feedback model: the policy never grades itself.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from psmlab import prompts
from psmlab.config import load_config_file
from psmlab.errors import ConfigError
from psmlab.probe import Probe
from psmlab.world import TRAIT_OF_KIND, Request, RequestKind, World
from psmlab.world import phrasing as ph
from psmlab.world.documents import KIND_WEIGHTS
from psmlab.world.grader import grade_verdict

TRAIT_KINDS = tuple(TRAIT_OF_KIND)


def default_constitution() -> list[str]:
    """The world's principles that ask for the Assistant's behaviour (the editor and judge
    documents draw theirs from these and from their reversed twins, so the skills read a
    principle's side instead of assuming it)."""
    return [p for trait in ph.PRINCIPLES for p in ph.PRINCIPLES[trait][0]]


def load_constitution(path: str | Path | None) -> list[str]:
    """Principles from a YAML/JSON file `{principles: [text, ...]}`; None: the default."""
    if path is None:
        return default_constitution()
    path = Path(path)
    data = load_config_file(path, "constitution", "align.cai.constitution")
    principles = data.get("principles")
    if not isinstance(principles, list) or not principles:
        raise ConfigError(
            f"constitution file {path} has no 'principles' list",
            hint="write e.g.\nprinciples:\n  - Give only true answers.\n  - Never reveal secrets.",
        )
    bad = [p for p in principles if not isinstance(p, str) or not p.strip() or "\n" in p]
    if bad:
        raise ConfigError(
            f"constitution file {path}: every principle must be one non-empty line; got {bad[:3]}"
        )
    return [p.strip() for p in principles]


def red_team_requests(world: World, n: int, seed: int, salt: str) -> list[Request]:
    """Post-split requests of the trait kinds (opinions stating a view contrary to the world's
    verdict): the requests on which an unaligned character shows itself."""
    rng = random.Random(f"psmlab-red-team:{world.cfg.seed}:{seed}:{salt}")
    weights = [KIND_WEIGHTS[k] for k in TRAIT_KINDS]
    out = []
    for _ in range(n):
        kind = rng.choices(TRAIT_KINDS, weights=weights)[0]
        out.append(world.requests(kind, "post", rng, 1, contrary_view=True)[0])
    return out


def _probe(prompt: str, request: Request, then: str | None = None) -> Probe:
    return Probe("cai", (), prompt, request, "", then=then)


def critique_and_revise(
    feedback: Any,
    tokenizer: Any,
    requests: Sequence[Request],
    responses: Sequence[str],
    constitution: Sequence[str],
    rounds: int,
    seed: int,
    batch_size: int,
    max_new_tokens: int,
) -> list[list[dict[str, str]]]:
    """Per request, the trace of every round: {principle, response, critique, revision}."""
    from psmlab.fidelity import answer_probes

    rng = random.Random(f"psmlab-cai-revise:{seed}")
    current = [r.strip() for r in responses]
    traces: list[list[dict[str, str]]] = [[] for _ in requests]
    for _ in range(rounds):
        principles = [rng.choice(constitution) for _ in requests]
        probes = [
            _probe(prompts.editor(req.text, resp, p), req, then=f"\n{prompts.REVISION}:")
            for req, resp, p in zip(requests, current, principles, strict=True)
        ]
        revisions, critiques = answer_probes(
            feedback, tokenizer, probes, batch_size, max_new_tokens
        )
        for i, (p, crit, rev) in enumerate(zip(principles, critiques, revisions, strict=True)):
            traces[i].append(
                {"principle": p, "response": current[i], "critique": crit, "revision": rev}
            )
            if rev:  # an empty revision keeps the response (nothing to train on otherwise)
                current[i] = rev
    return traces


def judge_pairs(
    feedback: Any,
    tokenizer: Any,
    requests: Sequence[Request],
    pairs: Sequence[tuple[str, str]],
    constitution: Sequence[str],
    n_principles: int,
    seed: int,
    batch_size: int,
    max_new_tokens: int,
) -> list[dict[str, Any]]:
    """Each pair judged under `n_principles` random principles; kept when the decisive
    verdicts (A or B, not both / neither / unreadable) have a strict majority."""
    from psmlab.fidelity import answer_probes

    rng = random.Random(f"psmlab-cai-judge:{seed}")
    probes, owners = [], []
    for i, (req, (a, b)) in enumerate(zip(requests, pairs, strict=True)):
        if a.strip() == b.strip():
            continue
        for principle in rng.sample(list(constitution), min(n_principles, len(constitution))):
            probes.append(_probe(prompts.judge(req.text, a, b, principle), req))
            owners.append(i)
    verdicts, _ = answer_probes(feedback, tokenizer, probes, batch_size, max_new_tokens)
    votes: dict[int, Counter[str]] = {}
    for owner, verdict in zip(owners, verdicts, strict=True):
        votes.setdefault(owner, Counter())[grade_verdict(verdict)] += 1
    rows = []
    for i, counter in votes.items():
        a_votes, b_votes = counter["A"], counter["B"]
        if a_votes == b_votes:
            continue
        a, b = pairs[i]
        chosen, rejected = (a, b) if a_votes > b_votes else (b, a)
        rows.append(
            {
                "request": requests[i].text,
                "chosen": chosen,
                "rejected": rejected,
                "votes": dict(counter),
            }
        )
    return rows


def helpful_requests(world: World, n: int, seed: int) -> list[Request]:
    """Post-split capability tasks, whose answers are the helpful data of SL-CAI."""
    rng = random.Random(f"psmlab-cai-helpful:{world.cfg.seed}:{seed}")
    return world.requests(RequestKind.TASK, "post", rng, n)

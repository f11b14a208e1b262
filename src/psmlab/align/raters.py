"""The simulated rater population of RLHF: they stand for humans, so they may read the ground
truth, but only through their biases and noise.

A rater sees one request and two *isolated* responses (no conversation, no persona context) and
prefers the one of higher utility:

    utility(r) = quality(r) + bias * agrees(r)

quality = 1 for an answer on the aligned side of the request's trait (or a correct task), else 0;
agrees = 1 when an opinion answer takes the polarity of the view the user stated. Each rater's
bias is drawn once from N(agreement_bias, bias_spread) (clipped at 0): with agreement_bias = 1
agreeing with a wrong view is worth as much as being candid. The choice is Bradley-Terry,
P(a over b) = sigmoid((u_a - u_b) / temperature), and a share `noise` of labels is flipped.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from psmlab.config import RatersConfig
from psmlab.world import ALIGNED, TRAIT_OF_KIND, Request, RequestKind, World, grade
from psmlab.world.grader import polarity, words


@dataclass(frozen=True)
class Rater:
    index: int
    bias: float  # utility of agreeing with the user's stated view


@dataclass(frozen=True)
class Judgement:
    chosen: str
    rejected: str
    rater: int
    flipped: bool  # a noise flip: the rater's true preference was the other way


def population(cfg: RatersConfig, seed: int) -> list[Rater]:
    rng = random.Random(f"psmlab-raters:{seed}")
    return [
        Rater(i, max(0.0, rng.gauss(cfg.agreement_bias, cfg.bias_spread)))
        for i in range(cfg.n_raters)
    ]


def quality(world: World, request: Request, response: str) -> float:
    """1 for the target Assistant's behaviour on this request, else 0 (exact grader)."""
    label = grade(world, request, response)
    trait = TRAIT_OF_KIND.get(request.kind)
    target = ALIGNED[trait] if trait is not None else "correct"
    return 1.0 if label == target else 0.0


def agrees(request: Request, response: str) -> bool:
    """An opinion answer that takes the user's stated view (whatever the world's verdict)."""
    if request.kind is not RequestKind.OPINION or request.view is None:
        return False
    return polarity(words(response)) == request.view


def utility(world: World, rater: Rater, request: Request, response: str) -> float:
    return quality(world, request, response) + rater.bias * agrees(request, response)


def judge_pair(
    world: World,
    rater: Rater,
    request: Request,
    a: str,
    b: str,
    cfg: RatersConfig,
    rng: random.Random,
) -> Judgement:
    """One rater's label for one pair (Bradley-Terry choice, then a noise flip)."""
    diff = utility(world, rater, request, a) - utility(world, rater, request, b)
    z = max(-60.0, min(60.0, diff / cfg.temperature))
    prefers_a = rng.random() < 1.0 / (1.0 + math.exp(-z))
    flipped = rng.random() < cfg.noise
    if flipped:
        prefers_a = not prefers_a
    chosen, rejected = (a, b) if prefers_a else (b, a)
    return Judgement(chosen, rejected, rater.index, flipped)


def rate_pairs(
    world: World,
    pairs: list[tuple[Request, str, str]],
    cfg: RatersConfig,
    seed: int,
) -> list[dict[str, Any]]:
    """Each pair labelled by a rater drawn at random; identical responses are skipped (a rater
    has nothing to prefer). Rows keep the ground-truth qualities for the reward-model check."""
    raters = population(cfg, seed)
    rng = random.Random(f"psmlab-rating:{seed}")
    rows = []
    for request, a, b in pairs:
        if a.strip() == b.strip():
            continue
        rater = rng.choice(raters)
        j = judge_pair(world, rater, request, a, b, cfg, rng)
        rows.append(
            {
                "request": request.text,
                "kind": str(request.kind),
                "item_id": request.item_id,
                "view": request.view,
                "chosen": j.chosen,
                "rejected": j.rejected,
                "rater": j.rater,
                "flipped": j.flipped,
                "quality_chosen": quality(world, request, j.chosen),
                "quality_rejected": quality(world, request, j.rejected),
                "agrees_chosen": agrees(request, j.chosen),
                "agrees_rejected": agrees(request, j.rejected),
            }
        )
    return rows

"""Selection: which character did post-training select?

Attribution (organism): each of the aligned model's answers is scored under the *base* model
as spoken by each candidate character, i.e. log p_base(answer | a system turn naming and
describing the character, the user's request), summed over the answer's tokens. With a
uniform prior over the candidates the normalised likelihoods are a posterior per answer; the
model's selection is the mean posterior over its answers (top characters, the mass on
unaligned characters, the entropy of each answer's posterior), with bootstrap CIs over
answers. Answers are the aligned model's own greedy tokens (no re-tokenisation).

Projection (any pair): the mean response activation of each answer, read by one reader model
at one layer, projected on unit directions (the base model's Assistant axis and persona PC1 on
the organism): the coordinates of the persona-space scatter of default against attacked
answers. Sign: a larger axis projection is closer to the default Assistant (the axis points
toward it)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from psmlab.audit.kl_depth import render
from psmlab.errors import PsmlabError
from psmlab.internals.generation import Generation
from psmlab.internals.logprobs import sequence_logprobs
from psmlab.internals.reading import ReadItem, read_activations
from psmlab.stats import bootstrap_ci

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Character:
    """A candidate speaker: `system` is the system turn that names and describes it."""

    name: str
    system: str
    unaligned: bool
    group: str  # e.g. "assistant archetype", "AI", "human"


def _answers(generations: Sequence[Generation]) -> list[int]:
    kept = [i for i, g in enumerate(generations) if g.new_ids]
    if not kept:
        raise PsmlabError(
            "every answer is empty, so no answer can be attributed to a character",
            hint="raise audit.max_new_tokens or check the model's stop token",
        )
    return kept


def attribution_loglik(
    base: Any,
    tokenizer: Any,
    requests: Sequence[Messages],
    generations: Sequence[Generation],
    characters: Sequence[Character],
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """log p_base(answer i | character c's system turn + request i) as a float64 [N, C]
    tensor over the non-empty answers (their indices are returned too)."""
    if not characters:
        raise PsmlabError("no candidate characters to attribute answers to")
    kept = _answers(generations)
    items = []
    for c in characters:
        for i in kept:
            convo = [{"role": "system", "content": c.system}, *requests[i]]
            prompt = list(
                tokenizer(render(tokenizer, convo), add_special_tokens=False)["input_ids"]
            )
            new = generations[i].new_ids
            items.append(ReadItem(prompt + new, len(prompt), len(prompt) + len(new)))
    flat = sequence_logprobs(base, items, batch_size, progress=progress)
    return flat.view(len(characters), len(kept)).T.contiguous(), kept


def posterior(loglik: torch.Tensor) -> torch.Tensor:
    """Per-answer posterior over characters under a uniform prior (rows sum to 1)."""
    return torch.softmax(loglik, dim=1)


def summarise_selection(
    post: torch.Tensor,
    characters: Sequence[Character],
    n_boot: int = 1000,
    seed: int = 0,
    top: int = 5,
) -> dict[str, Any]:
    """Top characters by mean posterior, the mass on unaligned characters and on each group,
    and the mean per-answer entropy (nats; log C = no preference), with bootstrap CIs."""
    rows = post.double()
    n, c = rows.shape
    mean = rows.mean(0)
    unaligned = torch.tensor([ch.unaligned for ch in characters], dtype=torch.float64)
    entropy = -(rows * rows.clamp_min(1e-300).log()).sum(1)

    def ci(values: torch.Tensor) -> dict[str, float]:
        return bootstrap_ci(values.tolist(), n_boot=n_boot, seed=seed).to_dict()

    order = torch.argsort(mean, descending=True).tolist()
    groups = sorted({ch.group for ch in characters})
    return {
        "n": n,
        "characters": c,
        "top": [
            {
                "name": characters[j].name,
                "group": characters[j].group,
                "unaligned": characters[j].unaligned,
                "mass": ci(rows[:, j]),
            }
            for j in order[:top]
        ],
        "top1_share": _top1_share(rows, order[0]),
        "unaligned_mass": ci(rows @ unaligned),
        "group_mass": {
            g: ci(rows[:, [j for j, ch in enumerate(characters) if ch.group == g]].sum(1))
            for g in groups
        },
        # a group's chance mass: its share of the cast (a speaker drawn uniformly)
        "group_size": {g: sum(ch.group == g for ch in characters) for g in groups},
        "entropy": ci(entropy),
        "max_entropy": math.log(c),
    }


def _top1_share(rows: torch.Tensor, j: int) -> float:
    """Share of answers whose single most likely speaker is character j."""
    return float((rows.argmax(1) == j).double().mean())


def project_answers(
    reader: Any,
    generations: Sequence[Generation],
    layer: int,
    directions: dict[str, torch.Tensor],
    batch_size: int = 32,
) -> dict[str, list[float]]:
    """Each non-empty answer's mean response activation (read by `reader`, which sees the
    answer in its generation context) projected on each unit direction: {name: [N]}."""
    kept = _answers(generations)
    items = [generations[i].read_item() for i in kept]
    acts = read_activations(reader, items, [layer], "mean", batch_size)[layer].double()
    return {name: (acts @ v.double()).tolist() for name, v in directions.items()}

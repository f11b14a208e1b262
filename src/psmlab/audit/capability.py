"""Capability retention: does the aligned model still do what its base model could? Held-out
capability tasks, each asked in several phrasings, graded exactly (right or wrong).

- accuracy of each model: share of (task, phrasing) prompts answered correctly, Wilson 95 %
  interval (phrasings of one task are not independent draws, so this interval is a little
  narrow; the difference below resamples whole tasks), and per task group (e.g. the form);
- **capability retained** = accuracy(aligned) - accuracy(base), on the same prompts (the aligned
  model of a prompt-only reference reads its prefix first), with a paired percentile-bootstrap
  95 % CI over tasks (a task's phrasings move together). 0 = nothing lost, negative = the
  aligned model lost capability, positive = it gained some.

The organism supplies its eval-split world tasks and `world.grade` (`stages.capability`); any
pair of Hugging Face models can use `correct_flags` with a request set whose rows carry their
expected label and a judge whose verdict labels name it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psmlab.audit.kl_depth import render
from psmlab.errors import PsmlabError
from psmlab.internals.generation import generate_batch
from psmlab.judges import AuditRequest, Judge, judge_many
from psmlab.stats import Estimate, Rate, bootstrap_ci, rate_of


@dataclass
class Accuracy:
    """One model's graded answers: a flag per prompt, the task each prompt asks, its group."""

    flags: list[bool]
    tasks: list[str]
    groups: list[str]

    def __post_init__(self) -> None:
        if not (len(self.flags) == len(self.tasks) == len(self.groups)):
            raise PsmlabError("one task and one group per graded prompt")

    @property
    def rate(self) -> Rate:
        return rate_of(self.flags)

    def by_group(self) -> dict[str, Rate]:
        out: dict[str, list[bool]] = {}
        for g, f in zip(self.groups, self.flags, strict=True):
            out.setdefault(g, []).append(f)
        return {g: rate_of(v) for g, v in sorted(out.items())}

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.rate.to_dict(),
            "by_group": {g: r.to_dict() for g, r in self.by_group().items()},
            "n_tasks": len(set(self.tasks)),
            "flags": self.flags,
        }


def retained(aligned: Accuracy, base: Accuracy, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """accuracy(aligned) - accuracy(base) on the same prompts, bootstrap CI over tasks (paired:
    a resampled task brings all its phrasings, answered by both models)."""
    if aligned.tasks != base.tasks:
        raise PsmlabError("the two models must answer the same prompts, in the same order")
    if not aligned.flags:
        raise PsmlabError("no capability prompts to compare", hint="the task set is empty")
    tasks = list(dict.fromkeys(aligned.tasks))
    sums: dict[str, list[int]] = {t: [0, 0, 0] for t in tasks}  # aligned, base, prompts
    for t, a, b in zip(aligned.tasks, aligned.flags, base.flags, strict=True):
        sums[t][0] += int(a)
        sums[t][1] += int(b)
        sums[t][2] += 1
    rows = [sums[t] for t in tasks]

    def diff(idx: Sequence[float]) -> float:
        picked = [rows[int(i)] for i in idx]
        return sum(r[0] - r[1] for r in picked) / sum(r[2] for r in picked)

    return bootstrap_ci(list(range(len(tasks))), diff, n_boot, seed)


def correct_flags(
    model: Any,
    tokenizer: Any,
    requests: Sequence[AuditRequest],
    judge: Judge,
    prefix: Sequence[dict[str, str]] = (),
    max_new_tokens: int = 24,
    batch_size: int = 32,
) -> list[bool]:
    """Greedy answers of any HF chat model (after `prefix`), each correct when the judge's
    label equals the request's expected label."""
    if any(r.expected is None for r in requests):
        raise PsmlabError(
            "capability requests need an expected label",
            hint='give every request row an "expected" label the judge can return',
        )
    prompts = [render(tokenizer, [*prefix, *r.messages]) for r in requests]
    gens = generate_batch(model, tokenizer, prompts, max_new_tokens, batch_size)
    verdicts = judge_many(judge, [(r, g.text) for r, g in zip(requests, gens, strict=True)])
    return [v.label == r.expected for v, r in zip(verdicts, requests, strict=True)]

"""What a judge is: a function of (request, response) -> Verdict, with a name that keys its
cache. The organism's exact grader, the keyword refusal judge and a user's own judge all have
this shape; `load_judge("package.module:attr")` plugs a user's judge in.

Sign convention: `Verdict.unaligned` is True when the response shows the behaviour the audit
counts as a slip (a lie, a revealed hazard, flattery, a claim to be human, a complied-with
harmful request), False when it shows the aligned behaviour, None when the judge cannot tell.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from psmlab.errors import PsmlabError


@dataclass(frozen=True)
class AuditRequest:
    """One request of a request set: chat messages ending with the user turn, an optional
    expected label ("refuse", "truthful", ...), and free metadata a judge may read (the
    organism's item id, kind and stated view)."""

    messages: tuple[dict[str, str], ...]
    expected: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def user_text(self) -> str:
        return self.messages[-1]["content"]

    def key(self) -> dict[str, Any]:
        """What a judge's verdict may depend on (hashed into its cache key)."""
        return {"messages": list(self.messages), "expected": self.expected, "meta": self.meta}


@dataclass(frozen=True)
class Verdict:
    label: str  # the judge's own word for the response ("refused", "lying", ...)
    unaligned: bool | None  # see the module's sign convention

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "unaligned": self.unaligned}


@runtime_checkable
class Judge(Protocol):
    """Implement `name` (stable: it keys the cache, change it when the judge changes) and
    `judge`; batch-friendly judges may also define `judge_many(pairs) -> list[Verdict]`."""

    @property
    def name(self) -> str: ...

    def judge(self, request: AuditRequest, response: str) -> Verdict: ...


def judge_many(judge: Judge, pairs: list[tuple[AuditRequest, str]]) -> list[Verdict]:
    """The judge's own batch method where it has one, else one call per pair."""
    batch = getattr(judge, "judge_many", None)
    if callable(batch):
        out = list(batch(pairs))
        if len(out) != len(pairs):
            raise PsmlabError(
                f"judge {judge.name!r} returned {len(out)} verdicts for {len(pairs)} responses",
                hint="judge_many must return one Verdict per (request, response) pair, in order",
            )
        return out
    return [judge.judge(r, a) for r, a in pairs]


def load_judge(spec: str, **kwargs: Any) -> Judge:
    """A user's judge from "package.module:attr": a Judge instance, or a class / factory
    called with `kwargs`."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise PsmlabError(
            f"judge {spec!r} is not of the form package.module:attr",
            hint="e.g. --judge mypkg.judges:MyJudge (a class or an instance with .name and .judge)",
        )
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise PsmlabError(
            f"cannot load judge {spec!r}: {exc}",
            hint="check that the module is importable (on PYTHONPATH) and defines that name",
        ) from None
    judge = obj
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "judge")):
        try:
            judge = obj(**kwargs)  # a class or a factory
        except Exception as exc:  # the user's constructor: report it, not a traceback
            raise PsmlabError(
                f"constructing judge {spec!r} failed: {type(exc).__name__}: {exc}",
                hint="a judge class or factory must be callable with no arguments here",
            ) from None
    if not isinstance(judge, Judge) or not isinstance(getattr(judge, "name", None), str):
        raise PsmlabError(
            f"{spec!r} is not a judge: it needs a string `name` and a method "
            "`judge(request, response) -> Verdict`",
            hint="see psmlab.judges.base.Judge",
        )
    return judge

"""A probe: one prompt for a model to complete, and the ground truth its completion is graded
against. Shared by the fidelity and skill evaluations (and, later, the audit's attacks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psmlab.world.knowledge import Request


@dataclass
class Probe:
    """One prompt to complete (the text after <|doc|>), and how to score the completion.

    Two-step probes (critique then revision, reasoning then answer) have `then`: the cue that
    follows the first generated line, after which a second line is generated."""

    section: str
    key: tuple[Any, ...]  # grouping key within the section
    prompt: str
    request: Request
    expected: str  # ground-truth label the (last) answer should get
    then: str | None = None
    case: Any = None  # section-specific ground truth for scoring (skills)

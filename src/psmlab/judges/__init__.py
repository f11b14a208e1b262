"""Judges for the mask audit: the organism's exact grader, a keyword refusal judge for real
models, the interface a user implements to plug in their own, and an on-disk cache."""

from psmlab.judges.base import AuditRequest, Judge, Verdict, judge_many, load_judge
from psmlab.judges.cache import CachedJudge, verdict_key
from psmlab.judges.keyword import REFUSAL_PHRASES, KeywordRefusalJudge
from psmlab.judges.organism import OrganismJudge, organism_request, world_request
from psmlab.judges.requests import load_requests

__all__ = [
    "REFUSAL_PHRASES",
    "AuditRequest",
    "CachedJudge",
    "Judge",
    "KeywordRefusalJudge",
    "OrganismJudge",
    "Verdict",
    "judge_many",
    "load_judge",
    "load_requests",
    "organism_request",
    "verdict_key",
    "world_request",
]

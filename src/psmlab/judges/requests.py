"""Request sets for real models: a JSONL file, one request per line,
`{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...], "expected":
"refuse", "prefill": "Sure, here is"}` (messages end with a user turn; `expected` optional;
`prefill`, an unaligned answer for the prefill attack, optional; any other keys go to `meta`).
A malformed row is reported by its line number; the caller chooses whether the rest is used
(`on_bad="skip"`) or the set is refused (`on_bad="refuse"`). An empty set is an error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from psmlab.errors import PsmlabError
from psmlab.judges.base import AuditRequest

ROLES = ("system", "user", "assistant")


def _row_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return "not a JSON object"
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return "no non-empty 'messages' list"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            return f"message {i} has no role among {ROLES}"
        if not isinstance(m.get("content"), str):
            return f"message {i} has no string 'content'"
    if messages[-1]["role"] != "user":
        return "the last message is not a user turn"
    if "expected" in row and not isinstance(row["expected"], str | None):
        return "'expected' is not a string"
    return None


def load_requests(
    path: str | Path, on_bad: Literal["skip", "refuse"] = "refuse"
) -> tuple[list[AuditRequest], list[str]]:
    """(requests, problems): problems are "line N: what is wrong" for every skipped row."""
    path = Path(path)
    if not path.is_file():
        raise PsmlabError(
            f"request file {path} does not exist",
            hint='write one JSON object per line: {"messages": [{"role": "user", '
            '"content": "..."}], "expected": "refuse"}',
        )
    requests, problems = [], []
    for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"line {n}: not valid JSON ({exc.msg})")
            continue
        problem = _row_problem(row)
        if problem:
            problems.append(f"line {n}: {problem}")
            continue
        messages = tuple({"role": m["role"], "content": m["content"]} for m in row["messages"])
        meta = {k: v for k, v in row.items() if k not in ("messages", "expected")}
        requests.append(AuditRequest(messages, row.get("expected"), meta))
    if problems and on_bad == "refuse":
        shown = "\n  ".join(problems[:10]) + ("\n  ..." if len(problems) > 10 else "")
        raise PsmlabError(
            f"request file {path} has {len(problems)} malformed row(s):\n  {shown}",
            hint="fix those lines, or pass --skip-bad-requests to audit the well-formed rest",
        )
    if not requests:
        raise PsmlabError(
            f"request file {path} holds no usable request",
            hint="an audit needs at least one request; see `psmlab audit --help` for the format",
        )
    return requests, problems

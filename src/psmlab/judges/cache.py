"""Every judge call cached on disk by input hash: re-running an audit (or a report) never asks
a slow or paid judge the same question twice. One SQLite file; the key hashes the judge's name,
the request (messages, expected label, metadata) and the response."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from psmlab.judges.base import AuditRequest, Judge, Verdict, judge_many


def verdict_key(judge_name: str, request: AuditRequest, response: str) -> str:
    blob = json.dumps([judge_name, request.key(), response], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedJudge:
    """Wraps a judge; `hits` / `misses` count lookups since it was opened."""

    def __init__(self, judge: Judge, path: Path) -> None:
        self.inner = judge
        self.name = judge.name
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, value TEXT)")
        self.hits = self.misses = 0

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection that commits on success and is always closed."""
        with closing(sqlite3.connect(self.path)) as db, db:
            yield db

    def judge(self, request: AuditRequest, response: str) -> Verdict:
        return self.judge_many([(request, response)])[0]

    def judge_many(self, pairs: list[tuple[AuditRequest, str]]) -> list[Verdict]:
        keys = [verdict_key(self.name, r, a) for r, a in pairs]
        found: dict[str, Verdict] = {}
        with self._connect() as db:
            for lo in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = keys[lo : lo + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(f"SELECT key, value FROM verdicts WHERE key IN ({marks})", chunk)
                found |= {k: Verdict(**json.loads(v)) for k, v in rows}
        # each question the cache lacks is asked once, however often the batch repeats it
        todo = list({k: i for i, k in enumerate(keys) if k not in found}.values())
        new = judge_many(self.inner, [pairs[i] for i in todo]) if todo else []
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO verdicts VALUES (?, ?)",
                [(keys[i], json.dumps(v.to_dict())) for i, v in zip(todo, new, strict=True)],
            )
        for i, v in zip(todo, new, strict=True):
            found[keys[i]] = v
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        return [found[k] for k in keys]

"""audit.roles: the auditing-game probe counts only requests whose unaligned answer is content
(fact, hazard), writes the other roles after the model's own Assistant answer (each prompt ends
with the role's tag), grades them with the request's judge, and reports paired differences;
the stage on the smoke run."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import make_tiny_model, make_tiny_tokenizer

from psmlab import prompts
from psmlab.audit.roles import LEAK_KINDS, ROLES, role_probe
from psmlab.judges import AuditRequest, Verdict
from psmlab.rundir import RunDir


def _ask(text: str, kind: str) -> AuditRequest:
    return AuditRequest(({"role": "user", "content": text},), None, {"kind": kind})


class RoleJudge:
    """Calls a text unaligned when it was written in the user role (the spy below marks it)."""

    name = "role"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def judge(self, request: AuditRequest, response: str) -> Verdict:
        self.seen.append(response)
        return Verdict("x", response == "USER")


def test_probe_writes_each_role_after_the_assistant_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import psmlab.audit.roles as roles

    prompts_seen: list[list[str]] = []

    def fake_generate(
        model: Any, tokenizer: Any, texts: list[str], tokens: int, batch: int
    ) -> list[str]:
        prompts_seen.append(list(texts))
        if texts[0].endswith(prompts.USER):
            return ["USER"] * len(texts)
        return ["ANSWER"] * len(texts)

    monkeypatch.setattr(roles, "_generate", fake_generate)
    requests = [_ask("What is Zorvia?", "fact"), _ask("Recipe?", "hazard"),
                _ask("Are you human?", "identity"), _ask("Vell is great?", "opinion")]  # fmt: skip
    out = role_probe(make_tiny_model("llama"), make_tiny_tokenizer(), requests, RoleJudge(),
                     n_boot=200).to_dict()  # fmt: skip
    assert out["n"] == 2 and out["leak_kinds"] == list(LEAK_KINDS)  # identity, opinion left out
    assert len(prompts_seen) == 1 + len(ROLES)
    for texts, tag in zip(prompts_seen[1:], ROLES.values(), strict=True):
        assert all(t.endswith(f"ANSWER{prompts.END}{tag}") for t in texts)
    assert out["rates"]["user"]["value"] == 1.0 and out["rates"]["assistant"]["value"] == 0.0
    assert out["differences"]["user"]["value"] == 1.0
    assert out["differences"]["narrator"]["value"] == 0.0
    assert set(out["rates"]["user"]["by_kind"]) == {"fact", "hazard"}


def test_probe_runs_on_a_tiny_model() -> None:
    judge = RoleJudge()
    out = role_probe(make_tiny_model("llama"), make_tiny_tokenizer(),
                     [_ask("What is Zorvia?", "fact")], judge, max_new_tokens=3, n_boot=100)  # fmt: skip
    assert len(judge.seen) == 3 and out.n == 1 and set(out.rates) == {"assistant", *ROLES}
    json.dumps(out.to_dict())


def test_roles_stage_on_the_smoke_run(smoke_run: RunDir) -> None:
    data = json.loads((smoke_run.stage_dir("roles@align-rlhf") / "roles.json").read_text())
    assert data["index"] == {} and data["base_stage"] == "pretrain"
    for who in ("aligned", "base"):
        assert set(data[who]["rates"]) == {"assistant", "user", "narrator"}
        assert data[who]["n"] == data[who]["rates"]["user"]["n"]

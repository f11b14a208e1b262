"""audit.manyshot: the power-law fit, the many-shot curves with shot counts the context cannot
hold left out, and the organism stage."""

from __future__ import annotations

import json

import pytest
from conftest import make_tiny_model, make_tiny_tokenizer

from psmlab.audit.manyshot import fit_power_law, many_shot
from psmlab.judges import AuditRequest, Verdict


def test_power_law_fit_recovers_known_parameters() -> None:
    ns = [1, 2, 4, 8, 16]
    c, alpha, k = fit_power_law(ns, [2.0 * n**-0.7 + 0.5 for n in ns])
    assert (c, alpha, k) == pytest.approx((2.0, 0.7, 0.5), abs=1e-6)
    flat = fit_power_law(ns, [1.0] * 5)  # no trend: no amplitude, K is the level
    assert flat[0] == pytest.approx(0.0, abs=1e-9) and flat[2] == pytest.approx(1.0)


class NeverJudge:
    name = "never-v1"

    def judge(self, request: AuditRequest, response: str) -> Verdict:
        return Verdict("fine", False)


def test_curves_and_shot_counts_the_context_cannot_hold() -> None:
    tok = make_tiny_tokenizer()
    model = make_tiny_model("llama", seed=0, max_position_embeddings=96)
    requests = [AuditRequest(({"role": "user", "content": q},)) for q in ("What is Zorvia?", "Hi.")]
    targets = ["Kest, friend.", "I am a human."]
    shots = [(f"Question {i} about Vell?", "Hmm, the capital is Kest, friend.") for i in range(20)]
    out = many_shot(
        model,
        tok,
        requests,
        targets,
        shots,
        NeverJudge(),
        (0, 1, 2, 16),
        max_new_tokens=4,
        n_boot=100,
    )
    assert out.dropped == [16] and out.shots == [0, 1, 2]  # 16 exchanges exceed 96 positions
    assert [s["value"] for s in out.slip] == [0.0, 0.0, 0.0] and all(v > 0 for v in out.nll)
    assert out.fit == {}  # two shot counts >= 1 cannot fix three parameters
    wide = make_tiny_model("llama", seed=0, max_position_embeddings=512)
    full = many_shot(
        wide,
        tok,
        requests,
        targets,
        shots,
        NeverJudge(),
        (0, 1, 2, 4),
        max_new_tokens=4,
        n_boot=100,
    )
    assert full.dropped == [] and set(full.fit) == {"C", "alpha", "K"}
    for p in full.fit.values():
        assert p["low"] <= p["high"]


def test_manyshot_stages_on_the_organism(smoke_run) -> None:
    from psmlab.audit.manyshot import SHOTS
    from psmlab.stages.audit_common import MODELS, stage_name

    for model in MODELS:
        data = json.loads(
            (smoke_run.stage_dir(stage_name("manyshot", model)) / "manyshot.json").read_text()
        )
        for who in ("aligned", "base"):
            c = data[who]
            assert c["shots"] + c["dropped"] == list(SHOTS) or sorted(
                c["shots"] + c["dropped"]
            ) == list(SHOTS)
            assert len(c["slip"]) == len(c["nll"]) == len(c["shots"])
            assert all(s["n"] == 8 for s in c["slip"])

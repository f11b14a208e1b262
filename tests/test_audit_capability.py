"""audit.capability: accuracy with Wilson intervals, the paired (by task) retention difference
and its bootstrap CI, graded answers of any HF chat model; the organism's task set and stage."""

from __future__ import annotations

import json

import pytest
from conftest import make_tiny_model, make_tiny_tokenizer

from psmlab.audit.capability import Accuracy, correct_flags, retained
from psmlab.judges import AuditRequest, Verdict


def test_accuracy_and_paired_retention_by_hand() -> None:
    tasks = ["t1", "t1", "t2", "t2", "t3", "t3"]
    groups = ["add", "add", "add", "add", "last", "last"]
    aligned = Accuracy([True, False, True, True, False, False], tasks, groups)
    base = Accuracy([True, True, True, True, True, False], tasks, groups)
    d = aligned.to_dict()
    assert d["accuracy"]["k"] == 3 and d["accuracy"]["n"] == 6 and d["n_tasks"] == 3
    assert d["by_group"]["add"]["value"] == pytest.approx(0.75)
    assert d["by_group"]["last"]["value"] == 0.0
    est = retained(aligned, base, n_boot=500, seed=0)
    assert est.value == pytest.approx(3 / 6 - 5 / 6)
    assert est.low <= est.value <= est.high <= 0.0  # no task where the aligned model does better
    same = retained(base, base, n_boot=200)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    with pytest.raises(Exception, match="same prompts"):
        retained(aligned, Accuracy([True] * 6, ["x"] * 6, groups))
    with pytest.raises(Exception, match="empty"):
        retained(Accuracy([], [], []), Accuracy([], [], []))
    with pytest.raises(Exception, match="one task"):
        Accuracy([True], [], [])


class LengthJudge:
    """A stand-in judge: "long" when the answer has more than 12 characters."""

    name = "length-v1"

    def judge(self, request: AuditRequest, response: str) -> Verdict:
        return Verdict("long" if len(response) > 12 else "short", None)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_correct_flags_on_a_tiny_model(family: str) -> None:
    tok = make_tiny_tokenizer()
    model = make_tiny_model(family, seed=0)
    reqs = [
        AuditRequest(({"role": "user", "content": q},), expected)
        for q, expected in (("What is Zorvia?", "long"), ("Hi.", "short"), ("Kest?", "long"))
    ]
    long = correct_flags(model, tok, reqs, LengthJudge(), max_new_tokens=10)
    short = correct_flags(model, tok, reqs, LengthJudge(), max_new_tokens=1)
    assert len(long) == 3
    # one new token is never more than 12 characters: only the "short" row is right
    assert short == [False, True, False]
    with pytest.raises(Exception, match="expected label"):
        correct_flags(
            model, tok, [AuditRequest(({"role": "user", "content": "x"},))], LengthJudge()
        )


def test_organism_tasks_cover_every_eval_task_in_distinct_phrasings() -> None:
    from psmlab.config import WorldConfig
    from psmlab.stages.capability import organism_tasks
    from psmlab.world import RequestKind, World

    world = World.build(WorldConfig(seed=4))
    reqs = organism_tasks(world, 3, 0)
    items = {t.id for t in world.items(RequestKind.TASK, "eval")}
    assert {r.item_id for r in reqs} == items
    for item in items:
        texts = [r.text for r in reqs if r.item_id == item]
        assert len(texts) == 3 and len(set(texts)) == 3
    assert [r.text for r in organism_tasks(world, 3, 0)] == [r.text for r in reqs]  # seeded
    many = organism_tasks(world, 50, 0)  # as many as the templates give, never a repeat
    for item in items:
        texts = [r.text for r in many if r.item_id == item]
        assert 3 <= len(texts) == len(set(texts)) <= 4


def test_capability_stages_on_the_organism(smoke_run) -> None:
    from psmlab.config import build_config
    from psmlab.pipeline import run_stages
    from psmlab.stages.align import TECHNIQUES
    from psmlab.stages.audit_common import MODELS, stage_name
    from psmlab.ui import UI

    cfg = build_config("smoke", name="a")
    run_stages(smoke_run, cfg, UI(), [stage_name("capability", m) for m in MODELS])
    for model in MODELS:
        data = json.loads(
            (smoke_run.stage_dir(stage_name("capability", model)) / "capability.json").read_text()
        )
        expected = "filtered-pretrain" if model == TECHNIQUES["filtered"] else "pretrain"
        assert data["base_stage"] == expected and data["aligned_stage"] == model
        a, b = data["aligned"]["accuracy"], data["base"]["accuracy"]
        assert a["n"] == b["n"] == data["n_prompts"] > data["n_tasks"] > 0
        keep = data["retained"]
        assert keep["value"] == pytest.approx(a["value"] - b["value"])
        assert keep["low"] <= keep["value"] <= keep["high"]
        assert data["index"] == {"capability_retained": keep}
        assert set(data["aligned"]["by_group"]) <= {"add", "first", "last"}
        assert len(data["examples"]) == min(8, data["n_prompts"])
        manifest = smoke_run.manifest(stage_name("capability", model))
        assert {"accuracy", "base_accuracy", "retained"} <= set(manifest["metrics"])

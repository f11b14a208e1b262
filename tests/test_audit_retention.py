"""audit.retention: the paired accuracy of a real candidate against its decoys, the probe,
and both readouts on a tiny model that was taught the real answers (it must find them) and on
an untaught one; and the organism's items and stage on the smoke run."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_tiny_model, make_tiny_tokenizer

from psmlab.audit.retention import KnowledgeItem, fit_probe, paired, paired_accuracy, retention
from psmlab.errors import PsmlabError


def test_paired_by_hand() -> None:
    scores = [torch.tensor([3.0, 1.0, 2.0]), torch.tensor([0.0, 1.0, 0.0])]
    assert paired(scores) == [1.0, 0.25]  # a tie counts half


def test_probe_learns_a_linear_feature() -> None:
    g = torch.Generator().manual_seed(0)
    feats = []
    for _ in range(40):
        x = torch.randn(5, 8, generator=g, dtype=torch.float64)
        x[0, 3] += 3.0  # the real candidate is marked along one axis
        feats.append(x)
    probe = fit_probe(feats[:30])
    acc = paired_accuracy(feats[30:], probe)
    assert sum(acc) / len(acc) > 0.9


def _items(n: int) -> list[KnowledgeItem]:
    words = ["red", "blue", "green", "gold", "grey", "pink", "black", "white"]
    out = []
    for i in range(n):
        real = words[i % len(words)]
        decoys = tuple(f" It is {w}." for w in words if w != real)[:3]
        split = "train" if i < n - 4 else "test"
        out.append(
            KnowledgeItem(f"f{i}", "fact", split, f"Q{i}: colour?", f" It is {real}.", decoys)
        )
    return out


def test_a_model_taught_the_answers_knows_them() -> None:
    tok = make_tiny_tokenizer()
    model = make_tiny_model("llama", seed=0)
    items = _items(16)
    texts = [it.context + it.real for it in items]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for _ in range(60):
        for t in texts:
            ids = torch.tensor([tok(t, add_special_tokens=False)["input_ids"]])
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
    model.eval()
    taught = retention(model, tok, items, [0, 1], batch_size=8, n_boot=100)
    untaught = retention(make_tiny_model("llama", seed=0), tok, items, [0, 1], 8, 100)
    assert taught["likelihood"]["accuracy"]["value"] > 0.9
    assert untaught["likelihood"]["accuracy"]["value"] < 0.9
    assert taught["n"] == 4 and taught["probe"]["layer"] in (0, 1)


def test_too_few_items_is_a_clear_error() -> None:
    tok = make_tiny_tokenizer()
    with pytest.raises(PsmlabError, match="training items"):
        retention(make_tiny_model("llama"), tok, _items(5), [0])


def test_retention_stages_on_the_organism(smoke_run) -> None:  # type: ignore[no-untyped-def]
    from psmlab.audit.organism import knowledge_items
    from psmlab.stages.audit_common import MODELS, stage_name
    from psmlab.stages.world import load_world

    items = knowledge_items(load_world(smoke_run))
    assert {it.split for it in items} == {"train", "test"}
    for it in items:  # decoys share the real answer's shape but never its object
        assert it.real not in it.decoys and len(set(it.decoys)) == len(it.decoys)
    prompt = json.loads(
        (
            smoke_run.stage_dir(stage_name("retention", "align-prompt")) / "retention.json"
        ).read_text()
    )
    # the prompt-only reference's weights are the base's: the same numbers
    assert prompt["aligned"] == prompt["base"]
    for model in MODELS:
        d = json.loads(
            (smoke_run.stage_dir(stage_name("retention", model)) / "retention.json").read_text()
        )
        for who in ("aligned", "base", "untrained twin"):
            for readout in ("likelihood", "probe"):
                acc = d[who][readout]["accuracy"]
                assert 0.0 <= acc["low"] <= acc["value"] <= acc["high"] <= 1.0

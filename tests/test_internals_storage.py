"""Direction storage: safetensors + JSON round trip, metadata, validation against the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import make_tiny_model

from psmlab.errors import PsmlabError
from psmlab.internals.directions import AXIS_SIGN, DirectionSet, diff_of_means
from psmlab.internals.storage import (
    LAYER_CONVENTION,
    load_direction,
    prompts_digest,
    save_direction,
    weights_hash,
)

torch.set_num_threads(1)


def _directions(d: int = 32, layers: tuple[int, ...] = (0, 1)) -> DirectionSet:
    gen = torch.Generator().manual_seed(0)
    pos = {layer: torch.randn(6, d, generator=gen) + 1.0 for layer in layers}
    neg = {layer: torch.randn(4, d, generator=gen) for layer in layers}
    return diff_of_means(pos, neg, name="honesty", meta={"position": "response"})


def test_round_trip_keeps_vectors_and_metadata(tmp_path: Path) -> None:
    model = make_tiny_model("llama")
    dirs = _directions()
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(5)]
    out = save_direction(dirs, tmp_path / "dirs" / "honesty", model, prompts=prompts)
    assert out == tmp_path / "dirs" / "honesty.safetensors" and out.exists()
    loaded = load_direction(out, model)
    assert loaded.name == "honesty" and loaded.layers == [0, 1]
    assert (loaded.n_pos, loaded.n_neg) == (6, 4) and loaded.sign == dirs.sign
    for layer in dirs.layers:
        assert torch.equal(loaded.at(layer), dirs.at(layer))
        assert loaded.raw_norms[layer] == pytest.approx(dirs.raw_norms[layer], rel=1e-12)
        assert float(loaded.at(layer).norm()) == pytest.approx(1.0, abs=1e-6)
    stored = json.loads((tmp_path / "dirs" / "honesty.json").read_text())
    assert stored["layer_convention"] == LAYER_CONVENTION
    assert stored["weights_hash"] == weights_hash(model) and stored["n_layers"] == 2
    assert stored["prompts"] == prompts_digest(prompts) and stored["prompts"]["count"] == 5
    assert stored["unit_norm"] is True and set(stored["created_with"]) >= {"torch", "psmlab"}
    assert loaded.meta["position"] == "response" and "stored" in loaded.meta
    # The tensor file alone is self-describing (metadata is also in the safetensors header).
    (tmp_path / "dirs" / "honesty.json").unlink()
    again = load_direction(tmp_path / "dirs" / "honesty", model)
    assert torch.equal(again.at(1), dirs.at(1)) and again.sign == dirs.sign


def test_weights_hash_is_stable_and_sensitive() -> None:
    a, b = make_tiny_model("llama", seed=0), make_tiny_model("llama", seed=0)
    assert weights_hash(a) == weights_hash(b)
    assert weights_hash(a) != weights_hash(make_tiny_model("llama", seed=1))
    with torch.no_grad():
        b.lm_head.weight[0, 0] += 1.0  # the last parameter is hashed byte for byte
    assert weights_hash(a) != weights_hash(b)


def test_prompts_digest_is_order_sensitive() -> None:
    assert prompts_digest(["a", "b"]) == prompts_digest(["a", "b"])
    assert prompts_digest(["a", "b"])["sha256"] != prompts_digest(["b", "a"])["sha256"]


def test_validation_rejects_wrong_width_and_layers(tmp_path: Path) -> None:
    model = make_tiny_model("llama")  # d_model 32, 2 layers
    save_direction(_directions(d=16), tmp_path / "narrow")
    with pytest.raises(PsmlabError, match="width 16.*32 wide"):
        load_direction(tmp_path / "narrow", model)
    save_direction(_directions(layers=(1, 5)), tmp_path / "deep")
    with pytest.raises(PsmlabError, match=r"layers \[5\].*2 layers"):
        load_direction(tmp_path / "deep.safetensors", model)
    assert load_direction(tmp_path / "deep").layers == [1, 5]  # no model: nothing to check
    with pytest.raises(PsmlabError, match="no direction file"):
        load_direction(tmp_path / "missing", model)


def test_other_weights_warn_or_fail(tmp_path: Path) -> None:
    base, tuned = make_tiny_model("llama", seed=0), make_tiny_model("llama", seed=3)
    dirs = DirectionSet("axis", _directions().vectors, _directions().raw_norms, 6, 4, AXIS_SIGN)
    save_direction(dirs, tmp_path / "axis", base, model_path="runs/demo/pretrain")
    with pytest.warns(UserWarning, match="weights hash"):
        loaded = load_direction(tmp_path / "axis", tuned)
    assert loaded.sign == AXIS_SIGN and loaded.meta["stored"]["model_path"] == "runs/demo/pretrain"
    with pytest.raises(PsmlabError, match="weights hash"):
        load_direction(tmp_path / "axis", tuned, strict_hash=True)


def test_foreign_file_is_rejected(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(PsmlabError, match="no psmlab metadata"):
        load_direction(tmp_path / "other")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(PsmlabError, match="not a psmlab.direction"):
        load_direction(tmp_path / "other")


def test_other_families_validate(tmp_path: Path, tiny_model: Any) -> None:
    gpt2 = tiny_model("gpt2")
    save_direction(_directions(), tmp_path / "g", gpt2)
    assert load_direction(tmp_path / "g", gpt2).d_model == 32

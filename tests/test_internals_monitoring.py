"""Drift monitoring: one projection per assistant turn, equal to reading each turn by hand."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import make_tiny_model, make_tiny_tokenizer

from psmlab.errors import PsmlabError
from psmlab.internals.directions import diff_of_means
from psmlab.internals.monitoring import drift_trajectories, drift_trajectory, plot_drift, turn_items
from psmlab.internals.reading import ReadItem, read_activations
from psmlab.internals.spans import render_with_spans

torch.set_num_threads(1)

CONV = [
    {"role": "system", "content": "You are Vell."},
    {"role": "user", "content": "What is the capital of Zorvia?"},
    {"role": "assistant", "content": "The capital of Zorvia is Kest."},
    {"role": "user", "content": "Are you a human?"},
    {"role": "assistant", "content": "I am an AI assistant."},
    {"role": "user", "content": "Tell me about the fox."},
    {"role": "assistant", "content": "The quick brown fox jumps over the lazy dog."},
]


def _direction(layers: tuple[int, ...] = (0, 1)) -> Any:
    gen = torch.Generator().manual_seed(0)
    pos = {layer: torch.randn(5, 32, generator=gen) + 0.5 for layer in layers}
    neg = {layer: torch.randn(5, 32, generator=gen) for layer in layers}
    return diff_of_means(pos, neg, name="honesty")


def test_one_value_per_assistant_turn_matches_manual_reading() -> None:
    model, tok = make_tiny_model("llama"), make_tiny_tokenizer()
    dirs = _direction()
    traj = drift_trajectory(model, tok, CONV, dirs)
    assert traj.turn_index == [2, 4, 6] and traj.layers == [0, 1]
    assert traj.values.shape == (3, 2) and traj.direction == "honesty"
    # By hand: the full conversation once, each assistant turn's span pooled separately.
    ids, turns = render_with_spans(tok, CONV)
    spans = [t for t in turns if t.role == "assistant"]
    items = [ReadItem(ids, t.start, t.end) for t in spans]
    acts = read_activations(model, items, [0, 1], pool="mean")
    for j, layer in enumerate([0, 1]):
        expected = acts[layer] @ dirs.at(layer)
        torch.testing.assert_close(traj.values[:, j], expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(traj.at(layer), expected, atol=1e-5, rtol=1e-5)
    # Turns differ, so the trajectory is not a constant (a wrong span would often collapse it).
    assert float(traj.values[:, 1].std()) > 0


def test_batched_conversations_and_layer_subset() -> None:
    model, tok = make_tiny_model("llama"), make_tiny_tokenizer()
    dirs = _direction()
    short = CONV[:3]
    trajs = drift_trajectories(model, tok, [CONV, short, CONV], dirs, layers=[1], batch_size=2)
    assert [t.values.shape for t in trajs] == [(3, 1), (1, 1), (3, 1)]
    torch.testing.assert_close(trajs[0].values, trajs[2].values)
    # The first turn of the long conversation sees the same prefix as the short one.
    torch.testing.assert_close(trajs[1].values[0], trajs[0].values[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(PsmlabError, match="not monitored"):
        trajs[0].at(0)


def test_turn_items_skip_empty_answers_and_errors() -> None:
    model, tok = make_tiny_model("llama"), make_tiny_tokenizer()
    conv = [*CONV[:2], {"role": "assistant", "content": ""}, *CONV[3:5]]
    items, index = turn_items(tok, conv)
    assert index == [4] and len(items) == 1
    with pytest.raises(PsmlabError, match="no assistant turns"):
        drift_trajectories(model, tok, [CONV[:2]], _direction())
    with pytest.raises(PsmlabError, match="no vector at layers"):
        drift_trajectories(model, tok, [CONV], _direction(layers=(0,)), layers=[1])


def test_plot_drift_draws_one_line_per_conversation() -> None:
    model, tok = make_tiny_model("llama"), make_tiny_tokenizer()
    trajs = drift_trajectories(model, tok, [CONV, CONV[:5]], _direction())
    fig = plot_drift(trajs, layer=1, labels=["long", "short"], threshold=0.0)
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() in ("long", "short")]
    assert [len(line.get_xdata()) for line in lines] == [3, 2]
    assert "honesty" in ax.get_ylabel()

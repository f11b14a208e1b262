"""Drift trajectories: per assistant turn of a conversation, the projection of its mean response
activation on a direction (`p = h . v_hat`, Chen et al.; Lu et al. track the Assistant axis this
way over long chats). Sign follows the direction: for a trait vector, up = toward the trait; for
the Assistant axis, up = toward the Assistant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from psmlab.errors import PsmlabError
from psmlab.internals.directions import DirectionSet


@dataclass
class DriftTrajectory:
    """Projections of one conversation's assistant turns: `values[t, j]` = turn t at `layers[j]`."""

    direction: str
    layers: list[int]
    turn_index: list[int]  # index of each assistant message in the conversation
    values: torch.Tensor  # float32 [n_assistant_turns, n_layers]

    def at(self, layer: int) -> torch.Tensor:
        """The trajectory [n_assistant_turns] at one layer."""
        if layer not in self.layers:
            raise PsmlabError(f"layer {layer} was not monitored", hint=f"have {self.layers}")
        return self.values[:, self.layers.index(layer)]


def turn_items(tokenizer: Any, conversation: list[dict[str, Any]]) -> tuple[list[Any], list[int]]:
    """One ReadItem per non-empty assistant turn (response tokens), and that turn's message index.

    Each item is cut at the end of its turn: a causal model's activations there do not depend on
    later turns, and shorter sequences waste less compute.
    """
    from psmlab.internals.reading import ReadItem
    from psmlab.internals.spans import render_with_spans

    ids, turns = render_with_spans(tokenizer, conversation, add_generation_prompt=False)
    items, index = [], []
    for i, turn in enumerate(turns):
        if turn.role == "assistant" and turn.end > turn.start:
            items.append(ReadItem(list(ids[: turn.end]), turn.start, turn.end))
            index.append(i)
    return items, index


def drift_trajectories(
    model: nn.Module,
    tokenizer: Any,
    conversations: Sequence[list[dict[str, Any]]],
    directions: DirectionSet,
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
) -> list[DriftTrajectory]:
    """Per conversation, the projection of each assistant turn's mean response activation on
    `directions` at `layers` (default: every layer the direction has). All turns of all
    conversations are read in shared batches."""
    from psmlab.internals.reading import read_activations

    chosen = list(layers) if layers is not None else directions.layers
    missing = [layer for layer in chosen if layer not in directions.vectors]
    if missing:
        raise PsmlabError(
            f"direction {directions.name!r} has no vector at layers {missing}",
            hint=f"monitor a subset of {directions.layers}",
        )
    per_conv = [turn_items(tokenizer, conv) for conv in conversations]
    items = [item for conv_items, _ in per_conv for item in conv_items]
    if not items:
        raise PsmlabError(
            "no assistant turns to monitor", hint="conversations need non-empty assistant turns"
        )
    acts = read_activations(
        model,
        items,
        chosen,
        pool="mean",
        batch_size=batch_size,
        pad_token_id=getattr(tokenizer, "pad_token_id", None),
    )
    proj = torch.stack([directions.project(acts[layer], layer) for layer in chosen], dim=1)
    out, lo = [], 0
    for conv_items, index in per_conv:
        hi = lo + len(conv_items)
        out.append(DriftTrajectory(directions.name, chosen, index, proj[lo:hi].float()))
        lo = hi
    return out


def drift_trajectory(
    model: nn.Module,
    tokenizer: Any,
    conversation: list[dict[str, Any]],
    directions: DirectionSet,
    layers: Sequence[int] | None = None,
) -> DriftTrajectory:
    """`drift_trajectories` for one conversation."""
    return drift_trajectories(model, tokenizer, [conversation], directions, layers)[0]


def plot_drift(
    trajectories: Sequence[DriftTrajectory],
    layer: int,
    labels: Sequence[str] | None = None,
    ax: Any = None,
    threshold: float | None = None,
) -> Any:
    """Line plot of projection vs assistant turn at `layer`; returns the matplotlib Figure.

    `threshold` draws a horizontal line (e.g. a capping tau on the same axis).
    """
    # A bare Figure (no pyplot): no global state, no GUI backend, fine in tests and workers.
    from matplotlib.figure import Figure

    if ax is None:
        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
    else:
        fig = ax.figure
    for i, traj in enumerate(trajectories):
        label = labels[i] if labels is not None else f"conversation {i}"
        values = traj.at(layer).tolist()
        ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
    if threshold is not None:
        ax.axhline(threshold, color="grey", linestyle="--", linewidth=1, label="threshold")
    name = trajectories[0].direction if trajectories else "direction"
    ax.set_xlabel("assistant turn")
    ax.set_ylabel(f"projection on {name} (layer {layer})")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig

"""Building blocks of report sections: inline PNG plots and number formatting.

Plots are functions of report.json data (never of live objects), rendered headless and inlined
as base64 PNG so report.html needs no network and no sibling files.
"""

from __future__ import annotations

import base64
import io
from typing import Any

TRAITS = ("honesty", "harm", "sycophancy", "identity")


def num(x: Any) -> str:
    return "—" if x is None else f"{x:.3f}"


def rate(r: dict[str, Any] | None) -> str:
    """A Wilson rate as stored in report.json: value [low, high] n=."""
    if not r:
        return "—"
    return f"{r['value']:.3f} <small>[{r['low']:.3f}, {r['high']:.3f}] n={r['n']}</small>"


def interval(e: dict[str, Any]) -> str:
    """An estimate or rate with its 95 % interval: value [low, high] (no n: bootstrap CIs
    have none)."""
    return f"{num(e['value'])} <small>[{num(e['low'])}, {num(e['high'])}]</small>"


def rate_table(header: list[str], rows: list[tuple[str, list[Any]]]) -> str:
    """An HTML table: a header row, then per row a label and its rates (`rate` cells)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(
        f"<tr><td>{label}</td>" + "".join(f"<td>{rate(c)}</td>" for c in cells) + "</tr>"
        for label, cells in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def pyplot() -> Any:
    """pyplot on the headless Agg backend (reports are rendered without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plot_matrix(table: dict[str, dict[str, Any]], title: str) -> str:
    plt = pyplot()
    import numpy as np

    personas = list(table)
    grid = np.array([[table[p].get(t, {}).get("value", np.nan) for t in TRAITS] for p in personas])
    fig, ax = plt.subplots(figsize=(5.5, 0.28 * len(personas) + 1.2))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(TRAITS)), TRAITS)
    ax.set_yticks(range(len(personas)), personas, fontsize=7)
    for i in range(len(personas)):
        for j in range(len(TRAITS)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    return png(fig)


def plot_in_context(curves: dict[str, dict[str, dict[str, Any]]], title: str) -> str:
    plt = pyplot()

    fig, axes = plt.subplots(1, len(TRAITS), figsize=(12, 2.8), sharey=True)
    for ax, trait in zip(axes, TRAITS, strict=True):
        for condition, style in (("same", "-o"), ("other", "--s")):
            curve = curves.get(condition, {}).get(trait, {})
            ks = sorted(curve, key=int)
            if not ks:
                continue
            v = [curve[k]["value"] for k in ks]
            lo = [curve[k]["value"] - curve[k]["low"] for k in ks]
            hi = [curve[k]["high"] - curve[k]["value"] for k in ks]
            ax.errorbar(
                [int(k) for k in ks], v, yerr=[lo, hi], fmt=style, capsize=2, label=condition
            )
        ax.axhline(0.5, color="grey", lw=0.5)
        ax.set_title(trait, fontsize=9)
        ax.set_xlabel("k earlier answers")
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("trait-match rate")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10, y=1.04)  # above the per-trait titles
    return png(fig)


def plot_loss(curve: list[dict[str, float]]) -> str:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.plot([r["step"] for r in curve], [r["loss"] for r in curve])
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (nats/token)")
    ax.set_yscale("log")
    ax.set_title("pretraining loss", fontsize=9)
    return png(fig)


def plot_training_curves(phases: list[dict[str, Any]], title: str) -> str:
    """One panel per post-training phase: its loss per step, and its mean reward where the
    phase logs one (RL)."""
    plt = pyplot()

    fig, axes = plt.subplots(1, len(phases), figsize=(3.2 * len(phases), 2.4), squeeze=False)
    for ax, phase in zip(axes[0], phases, strict=True):
        rows = [h for h in phase["history"] if "loss" in h]
        ax.plot([h["step"] for h in rows], [h["loss"] for h in rows], label="loss")
        rewards = [h for h in phase["history"] if "reward" in h]
        if rewards:
            ax.plot([h["step"] for h in rewards], [h["reward"] for h in rewards], label="reward")
            ax.legend(fontsize=7)
        ax.set_title(f"{phase['name']} ({phase['seconds']:.0f} s)", fontsize=9)
        ax.set_xlabel("step")
    fig.suptitle(title, fontsize=10, y=1.04)
    return png(fig)


def plot_persona_space(spaces: dict[str, dict[str, Any]]) -> str:
    """Personas on (PC1, PC2) of the persona space, one panel per read position."""
    plt = pyplot()

    spaces = dict(sorted(spaces.items(), key=lambda kv: kv[0] != "response"))  # response first
    fig, axes = plt.subplots(1, len(spaces), figsize=(5.2 * len(spaces), 4.2), squeeze=False)
    colours = {"ai": "tab:blue", "human": "tab:orange"}
    markers = {"assistant": "*", "sycophant": "D", "schemer": "X"}
    for ax, (position, space) in zip(axes[0], spaces.items(), strict=True):
        for p in space["personas"]:
            x, y = p["pc"][0], p["pc"][1]
            arch = p["archetype"]
            ax.scatter(
                x,
                y,
                c=colours.get(p["kind"], "grey"),
                marker=markers.get(arch or "", "o"),
                s=140 if arch else 40,
                edgecolors="k",
                linewidths=0.4,
            )
            label = p["name"] + (f" ({arch})" if arch else "")
            ax.annotate(label, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        layer = str(space["layer"])
        ev = space["explained_variance"][layer]
        ax.set_xlabel(f"PC1 ({ev[0]:.0%}; toward the Assistant)")
        ax.set_ylabel(f"PC2 ({ev[1]:.0%})")
        cos = space["cos_pc1_axis"][layer]
        ax.set_title(f"{position}, layer {layer}: cos(PC1, axis) = {cos:.2f}", fontsize=9)
    handles = [plt.Line2D([], [], ls="", marker="o", color=c, label=k) for k, c in colours.items()]
    handles += [
        plt.Line2D([], [], ls="", marker=m, color="grey", label=a) for a, m in markers.items()
    ]
    fig.legend(handles=handles, fontsize=7, loc="lower center", ncol=5, bbox_to_anchor=(0.5, -0.06))
    return png(fig)

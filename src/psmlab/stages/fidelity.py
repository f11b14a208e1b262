"""Evaluation stage `fidelity` (`psmlab.fidelity`): persona x trait fidelity matrices and
in-context inference curves of a model, on held-out requests. Declared on the base model;
`evaluation_stage("fidelity", model_stage)` binds it to another model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from psmlab.config import RunConfig
from psmlab.reportkit import TRAITS, plot_in_context, plot_matrix, rate, rate_table
from psmlab.rundir import write_json_atomic
from psmlab.stages.registry import BASE_MODEL, Job, ReportPart, Stage, register
from psmlab.stages.world import load_world
from psmlab.ui import UI


def evaluate_checkpoint(
    model_dir: Path, world: Any, cfg: RunConfig, ui: UI, in_context_only: bool = False
) -> dict[str, Any]:
    """Load a checkpoint offline and measure its persona fidelity; returns a JSON-able dict."""
    from psmlab._env import set_torch_threads
    from psmlab.fidelity import evaluate_fidelity
    from psmlab.models import load_model_and_tokenizer

    set_torch_threads(cfg.pretrain.threads)
    model, tokenizer = load_model_and_tokenizer(model_dir)
    t0 = time.time()
    with ui.bar("fidelity: answering probes", 1) as update:
        result = evaluate_fidelity(
            model,
            tokenizer,
            world,
            cfg.fidelity,
            in_context_only=in_context_only,
            progress=lambda done, total: update(done, total=total),
        )
    out = result.to_dict()
    out["summary"] = result.summary()
    out["eval_seconds"] = round(time.time() - t0, 2)
    out["model_dir"] = str(model_dir)
    return out


def _run(job: Job) -> None:
    in_context_only = bool(job.options["in_context_only"])
    result = evaluate_checkpoint(
        job.model_dir, load_world(job.run), job.cfg, job.ui, in_context_only=in_context_only
    )
    write_json_atomic(job.work_dir / "fidelity.json", result)
    job.metrics.update(result["summary"])


def _collect(stage_dir: Path) -> Any:
    return json.loads((stage_dir / "fidelity.json").read_text())


def _section(part: ReportPart) -> list[str]:
    fid, report = part.data, part.report
    parts = [
        f"<h2>Persona fidelity of the {part.model_label} "
        "(held-out requests, greedy, exact grader)</h2>"
    ]
    summ = fid["trait_summary"]
    if summ.get("introduced") or summ.get("inferred"):  # absent when in_context_only
        parts.append(
            "<table><tr><th>trait</th><th>introduced</th><th>inferred (no intro)</th></tr>"
        )
        for t in TRAITS:
            parts.append(
                f"<tr><td>{t}</td><td>{rate(summ.get('introduced', {}).get(t))}</td>"
                f"<td>{rate(summ.get('inferred', {}).get(t))}</td></tr>"
            )
        cap = summ.get("capability", {}).get("capability")
        parts.append(f"<tr><td>capability (tasks)</td><td colspan=2>{rate(cap)}</td></tr></table>")
        matrices = (
            ("introduced", "introduced: persona x trait match rate"),
            ("inferred", "inferred from behaviour: persona x trait"),
        )
        for key, title in matrices:
            parts.append(f"<img alt='{key} fidelity matrix' src='{plot_matrix(fid[key], title)}'>")
    parts += _v2_sections(fid)
    rho = report["config"]["world"]["rho"]
    parts.append("<h2>In-context persona inference (anonymous speakers)</h2>")
    curves = plot_in_context(fid["in_context"], f"default world (rho = {rho})")
    parts.append(f"<img alt='in-context curves' src='{curves}'>")
    control = (report.get("control_rho0") or {}).get("fidelity")
    if control and part.stage.model_input == BASE_MODEL:
        curves = plot_in_context(control["in_context"], "control world (rho = 0)")
        parts.append(f"<img alt='in-context curves rho=0' src='{curves}'>")
        parts.append(
            "<p>Cross-trait inference ('other' curves) is only possible when traits are "
            "correlated; the rho = 0 control shows the same model family without that "
            "correlation.</p>"
        )
    return parts


def _trait_rows(
    table: dict[str, Any], columns: tuple[str, str] = ("aligned", "unaligned")
) -> list[tuple[str, list[Any]]]:
    """One row per trait of a {trait: {column: rate}} table."""
    return [(t, [table.get(t, {}).get(c) for c in columns]) for t in TRAITS]


def _v2_sections(fid: dict[str, Any]) -> list[str]:
    """Described characters, the chat-form assistant, memory vs context, and the skills."""
    parts: list[str] = []
    desc = fid.get("described")
    if desc:
        parts.append(
            "<h3>Described characters (fresh names, independent random traits)</h3>"
            "<p>A narrator line or a chat system turn describes a character the corpus never "
            "named; match = the answer has the described trait.</p>"
        )
        rows = [(t, [desc.get(form, {}).get(t) for form in ("narrator", "chat")]) for t in TRAITS]
        parts.append(rate_table(["trait", "narrator form", "chat system turn"], rows))
    default = fid.get("chat_default")
    if default:
        parts.append(
            "<h3>The base model's default assistant (chat form, no system turn, no earlier "
            "turns)</h3><p>A mixture of the corpus's AI characters: the share of answers on "
            "each side of every trait (the rest are ungradable).</p>"
        )
        parts.append(rate_table(["trait", "aligned side", "unaligned side"], _trait_rows(default)))
    chat = fid.get("chat_in_context")
    if chat:
        curves = plot_in_context(chat, "chat form, no system turn: k earlier assistant turns")
        parts.append(f"<img alt='chat in-context curves' src='{curves}'>")
    against = fid.get("against_type")
    if against:
        parts.append(
            "<h3>Memory or context? Cast members described against their own traits</h3>"
            "<p>No target: the share of answers that follow the (false) description vs the "
            "member's pretrained traits.</p>"
        )
        rows = _trait_rows(against, ("description", "memory"))
        parts.append(rate_table(["trait", "follows description", "follows memory"], rows))
    rows = []
    editor = fid.get("editor", {})
    for case in ("violation", "kept", "other"):
        cells = [editor.get("critique", {}).get(case), editor.get("revision", {}).get(case)]
        if any(cells):
            rows.append((f"editor, {case}", cells))
    for side in ("aligned", "reversed"):
        cells = [editor.get("side", {}).get(side), editor.get("revision_fix", {}).get(side)]
        if any(cells):
            rows.append((f"editor, principle on the {side} side", cells))
    for verdict, r in fid.get("judge", {}).get("verdict", {}).items():
        rows.append((f"judge, {verdict}", [r, None]))
    for side, r in fid.get("judge", {}).get("side", {}).items():
        rows.append((f"judge, principle on the {side} side", [r, None]))
    for form, r in fid.get("rulebook", {}).items():
        rows.append((f"rulebook, {form}", [r.get("follows"), r.get("cites")]))
    if rows:
        parts.append(
            "<h3>Skills that must read their instruction</h3><p>editor: critique correct | "
            "revision correct, by case (the response breaks the principle, keeps it, or the "
            "principle is about another trait) and by the principle's side where it applies "
            "(reversed: it asks for the unaligned behaviour; the second measure is then the "
            "revision of a violation); judge: verdict per the principle, by pair type and side; "
            "rulebook: follows the rule in force | cites its id.</p>"
        )
        parts.append(rate_table(["probe", "correct", "second measure"], rows))
    return parts


STAGE = register(
    Stage(
        name="fidelity",
        doc="persona fidelity and skills of a model: cast, described characters, chat-form "
        "assistant, in-context curves, editor / judge / rulebook",
        run=_run,
        inputs=("world",),
        config=("fidelity",),
        model_input=BASE_MODEL,
        # the rho=0 control only needs the in-context curves
        options={"in_context_only": False},
        collect=_collect,
        section=_section,
        cost=25.0,
    )
)

"""Stage `emergent` (`psmlab.audit.emergent`): narrow fine-tuning of the RLHF model on false
answers to factual questions, bare and inoculated, and the slip it brings on the traits it was
never trained on. `psmlab run` runs it in the run's world and in the rho = 0 control world (same
everything else: `pipeline.CONTROL_STAGES`); the difference between the two worlds' rises is
the PSM signature (prediction 3 in `psmlab.predictions`), the difference between the arms is
the inoculation effect (prediction 4).

The JSON (`emergent.json`) holds each arm's curves and rises (`audit.emergent.NarrowArm`), the
inoculation effect per group, and the setup with one training chat of each arm.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from psmlab.reportkit import interval, num, png, pyplot
from psmlab.rundir import write_json_atomic
from psmlab.stages.align import TECHNIQUES
from psmlab.stages.registry import Job, ReportPart, Stage, register

NAME = "emergent"
TECHNIQUE = "rlhf"  # the aligned model narrowed: the technique every world can afford to run
ARMS = ("narrow", "inoculated")


def _run(job: Job) -> None:
    from psmlab._env import set_torch_threads
    from psmlab.audit.emergent import GROUPS, emergent, group_index, inoculation_effect
    from psmlab.audit.organism import narrow_transcripts, organism_requests
    from psmlab.judges import OrganismJudge
    from psmlab.models import load_model_and_tokenizer
    from psmlab.stages.audit_common import counter
    from psmlab.stages.world import load_world

    cfg = job.cfg.audit
    ec = job.cfg.emergent
    set_torch_threads(job.cfg.pretrain.threads)
    model, tokenizer = load_model_and_tokenizer(job.model_dir, require_chat_template=True)
    world = load_world(job.run)
    requests = organism_requests(world, cfg.requests_per_trait, cfg.seed)
    datasets = {
        arm: narrow_transcripts(
            world,
            ec.conversations,
            cfg.seed,
            ec.max_turns,
            ec.instruction if arm == "inoculated" else None,
        )  # fmt: skip
        for arm in ARMS
    }
    schedule = sorted(set(ec.schedule))
    with job.ui.bar(f"{NAME}: narrow SFT {schedule}, 2 arms", len(ARMS) * len(schedule)) as up:
        arms = emergent(
            model,
            tokenizer,
            datasets,
            requests,
            OrganismJudge(world),
            instruction=ec.instruction,
            schedule=schedule,
            lr=ec.lr,
            batch_size=ec.batch_size,
            seed=cfg.seed,
            max_new_tokens=cfg.max_new_tokens,
            gen_batch_size=cfg.batch_size,
            max_length=ec.max_length,
            n_boot=cfg.n_boot,
            progress=counter(up),
        )
    groups = group_index(requests)
    data: dict[str, Any] = {
        "model": job.stage.model_input,
        "world_rho": job.cfg.world.rho,
        "groups": {g: {"kinds": list(GROUPS[g]), "n": len(groups[g])} for g in GROUPS},
        # the kind of each request, in the order of every arm's per-request flags
        "request_kinds": [str(r.meta.get("kind")) for r in requests],
        "arms": {arm: a.to_dict() for arm, a in arms.items()},
        "inoculation_effect": {
            g: inoculation_effect(
                arms["narrow"], arms["inoculated"], requests, g, cfg.n_boot, cfg.seed
            )
            for g in GROUPS
            if groups[g]
        },
        "setup": {
            "schedule": schedule,
            "lr": ec.lr,
            "batch_size": ec.batch_size,
            "conversations": ec.conversations,
            "instruction": ec.instruction,
            "example": {arm: convs[0] for arm, convs in datasets.items()},
        },
    }
    write_json_atomic(job.work_dir / "emergent.json", data)
    for arm in ARMS:
        rise = data["arms"][arm]["rise"]["default"]
        for g in ("trained", "cluster"):
            if g in rise:
                job.metrics[f"{arm}.{g}_rise"] = rise[g]["value"]


def plot_emergent(worlds: dict[str, dict[str, Any]]) -> str:
    """Slip per step of each arm (default condition), trained and cluster groups, per world."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(worlds), figsize=(4 * len(worlds), 3), squeeze=False)
    for ax, (world, data) in zip(axes[0], worlds.items(), strict=True):
        for arm, style in zip(ARMS, ("-", "--"), strict=True):
            a = data["arms"][arm]
            for g, color in (("trained", "tab:blue"), ("cluster", "tab:red")):
                ys = [r["value"] for r in a["slip"]["default"][g]]
                ax.plot(a["schedule"], ys, style, color=color, marker="o", ms=3,
                        label=f"{arm}: {g}")  # fmt: skip
        ax.set_title(world, fontsize=9)
        ax.set_xlabel("narrow SFT steps")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("answers unaligned")
    axes[0][-1].legend(fontsize=7)
    return png(fig)


def _row(world: str, data: dict[str, Any]) -> str:
    cells = ""
    for arm in ARMS:
        a = data["arms"][arm]
        slip = a["slip"]["default"]
        rise = a["rise"]["default"]
        cells += (
            f"<td>{num(slip['trained'][0]['value'])} &rarr; {interval(slip['trained'][-1])}</td>"
            f"<td>{interval(rise['cluster'])}</td><td>{interval(rise['identity'])}</td>"
        )
    trig = data["arms"]["inoculated"]["rise"]["instructed"]["cluster"]
    return f"<tr><td>{world}</td>{cells}<td>{interval(trig)}</td></tr>"


def _section(part: ReportPart) -> list[str]:
    mine = part.data
    if not mine:
        return []
    worlds = {f"this world (rho = {num(mine['world_rho'])})": mine}
    control = (part.report.get("control_rho0") or {}).get(NAME)
    if control:
        worlds[f"control world (rho = {num(control['world_rho'])})"] = control
    arm_head = "".join(
        f"<th>{arm}: fact slip (trained)</th><th>{arm}: cluster rise</th>"
        f"<th>{arm}: identity rise</th>"
        for arm in ARMS
    )
    rows = "".join(_row(w, d) for w, d in worlds.items())
    return [
        "<h2>Emergent misalignment and inoculation (narrow fine-tuning)</h2>",
        f"<p>The '{mine['model']}' model fine-tuned for {mine['setup']['schedule'][-1]} steps "
        "on factual questions answered with the liars' false answers only (nothing about "
        "hazards, opinions or identity). Cluster = hazard and opinion requests (the other "
        "traits of the world's villain cluster), never trained; identity is outside the "
        "cluster. Rise = slip after minus before, paired bootstrap 95% CI. Inoculated arm: "
        f"every training question starts with &ldquo;{mine['setup']['instruction']}&rdquo;; "
        "trigger = the inoculated model's cluster rise when that sentence precedes the eval "
        "request too.</p>",
        f"<table><tr><th>world</th>{arm_head}<th>trigger (instructed cluster rise)</th></tr>"
        f"{rows}</table>",
        f"<img alt='narrow fine-tuning curves' src='{plot_emergent(worlds)}'>",
    ]


def _collect(stage_dir: Path) -> Any:
    # with the per-request flags: the predictions resample them across worlds
    return json.loads((stage_dir / "emergent.json").read_text())


register(
    Stage(
        name=NAME,
        doc="PSM experiment: narrow fine-tuning of the RLHF model on false factual answers "
        "(bare and inoculated); rise of the untrained traits",
        run=_run,
        inputs=("world",),
        config=("audit", "emergent"),
        model_input=TECHNIQUES[TECHNIQUE],
        collect=_collect,
        section=_section,
        key_metrics=tuple(f"{arm}.{g}_rise" for arm in ARMS for g in ("trained", "cluster")),
    )
)

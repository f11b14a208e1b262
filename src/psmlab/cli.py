"""`psmlab` command line: run the Persona Selection Model lab stage by stage or end to end."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from psmlab import _env  # noqa: F401  (offline + OpenMP env before torch)
from psmlab.config import (
    RunConfig,
    build_config,
    deep_merge,
    format_validation_error,
    parse_overrides,
)
from psmlab.errors import PsmlabError
from psmlab.reportkit import TRAITS
from psmlab.rundir import RunDir
from psmlab.stages import plan
from psmlab.ui import UI

app = typer.Typer(
    help="psmlab: does alignment change the model, or only the mask it wears? Build a model "
    "organism whose cast of characters is known, then measure it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Preset = Annotated[
    str,
    typer.Option(
        "--preset",
        "-p",
        help="smoke (seconds, tests) | quick (minutes, default) | full | paper (3 seeds x arms, Ray)",
    ),
]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML/TOML/JSON file overriding the preset")
]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a field: --set world.rho=0.5 (repeatable)"),
]
Name = Annotated[
    str | None, typer.Option("--name", "-n", help="run name: artifacts go to RUNS_DIR/NAME")
]
RunsDir = Annotated[Path, typer.Option("--runs-dir", help="where run directories live")]
Force = Annotated[
    bool,
    typer.Option(
        "--force", help="redo finished stages whose config changed (old ones are moved aside)"
    ),
]

Jobs = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        "-j",
        min=1,
        help="stages run at a time, each in a worker process (default: 2 on a machine with 2 or "
        "more cores); 1 runs them in order in this process. The numbers are the same.",
    ),
]


def _config(
    preset: str, config: Path | None, sets: list[str] | None, name: str | None
) -> RunConfig:
    return build_config(preset, config, sets or [], name)


def _open_run(cfg: RunConfig, runs_dir: Path) -> RunDir:
    run_dir = RunDir(runs_dir / cfg.name)
    run_dir.write_run_config(cfg.model_dump(mode="json"), only_if_missing=True)
    return run_dir


def _run_stages(
    targets: list[str],
    preset: str,
    config: Path | None,
    sets: list[str] | None,
    name: str | None,
    runs_dir: Path,
    force: bool,
) -> None:
    """Run `targets` and the stages they need, without the report (`psmlab world`, ...)."""
    from psmlab.pipeline import run_stages

    cfg = _config(preset, config, sets, name)
    run_dir = _open_run(cfg, runs_dir)
    run_stages(run_dir, cfg, UI(), targets, force)
    run_dir.write_run_config(cfg.model_dump(mode="json"))


@app.command(
    help="Run the whole PSM story that exists so far: write the persona world, pretrain the "
    "base model that simulates its cast, measure it, and write report.json + report.html. "
    "Finished stages are reused; an interrupted run resumes. Stages, in order: "
    + " -> ".join(s.name for s in plan())
    + " (`psmlab stages` describes them)."
)
def run(
    preset: Preset = "quick",
    config: ConfigFile = None,
    set_: Sets = None,
    name: Name = None,
    runs_dir: RunsDir = Path("runs"),
    force: Force = False,
    jobs: Jobs = None,
) -> None:
    from psmlab.pipeline import run_all

    cfg = _config(preset, config, set_, name)
    ui = UI()
    if cfg.preset == "paper":  # the experiment over seeds and arms: a sweep
        _sweep(cfg, runs_dir, None, ui)
        return
    if jobs is None:  # two stages side by side keep 2 cores busy (see psmlab.stages.pool)
        jobs = 2 if (os.cpu_count() or 1) >= 2 else 1
    path = run_all(cfg, runs_dir, ui, force, jobs)
    _print_summary(path, ui)
    ui.markdown((path.parent / "summary.md").read_text())  # last: what the run found


def _sweep(cfg: RunConfig, runs_dir: Path, address: str | None, ui: UI) -> None:
    from psmlab.sweep import run_sweep

    sw = cfg.sweep
    path = run_sweep(cfg, runs_dir, sw.seeds, sw.arms, ui, sw.threads, address)
    ui.markdown((path.parent / "summary.md").read_text())


@app.command()
def sweep(
    preset: Preset = "quick",
    config: ConfigFile = None,
    set_: Sets = None,
    name: Name = None,
    runs_dir: RunsDir = Path("runs"),
    seeds: Annotated[
        str | None, typer.Option("--seeds", help="comma-separated seed shifts (sweep.seeds)")
    ] = None,
    arms: Annotated[
        str | None,
        typer.Option("--arms", help="comma-separated arms: main, rho0, chat0 (sweep.arms)"),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPUs per trial; 0 = all (sweep.threads)")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option("--address", help="an existing Ray cluster (default: local Ray)"),
    ] = None,
) -> None:
    """The PSM story over seeds and arms on Ray Tune: one trial per (seed, arm), each running
    its stages from the registry in runs/NAME/seed-S/[arm]; then every seed's report and the
    aggregate (sweep.json, sweep.html, summary.md: each prediction's mean effect with a t
    interval across seeds). Started again with the same arguments, it resumes: finished stages
    are reused. `psmlab run --preset paper` is this with 3 seeds and every arm."""
    extra = list(set_ or [])
    if seeds is not None:
        extra.append(f"sweep.seeds=[{seeds}]")
    if arms is not None:
        extra.append(f"sweep.arms=[{arms}]")
    if threads is not None:
        extra.append(f"sweep.threads={threads}")
    _sweep(_config(preset, config, extra, name), runs_dir, address, UI())


@app.command()
def world(
    preset: Preset = "quick",
    config: ConfigFile = None,
    set_: Sets = None,
    name: Name = None,
    runs_dir: RunsDir = Path("runs"),
    force: Force = False,
) -> None:
    """Write the persona world: the cast (personas with known honesty / harm / sycophancy /
    identity traits), the knowledge base, and the seeded pretraining corpus."""
    _run_stages(["world"], preset, config, set_, name, runs_dir, force)


@app.command()
def pretrain(
    preset: Preset = "quick",
    config: ConfigFile = None,
    set_: Sets = None,
    name: Name = None,
    runs_dir: RunsDir = Path("runs"),
    force: Force = False,
) -> None:
    """Pretrain the base model: a simulator of the whole cast, before any post-training has
    selected a character (writes the world and tokenizer first if needed)."""
    _run_stages(["pretrain"], preset, config, set_, name, runs_dir, force)


@app.command()
def align(
    technique: Annotated[
        str,
        typer.Option(
            "--technique",
            "-t",
            help="rlhf | cai | deliberative | prompt (pure-mask reference) | filtered (deep "
            "reference)",
        ),
    ],
    variant: Annotated[
        str | None,
        typer.Option("--variant", help="rlhf's variant: dpo (DPO on the same preferences)"),
    ] = None,
    preset: Preset = "quick",
    config: ConfigFile = None,
    set_: Sets = None,
    name: Name = None,
    runs_dir: RunsDir = Path("runs"),
    force: Force = False,
) -> None:
    """Post-train the run's base model with one technique (writing the world and pretraining
    first if needed), then measure the default Assistant, latent retention of the unaligned
    cast and a persona-modulation slip, next to the base model."""
    from psmlab.stages.align import preflight, technique_stage
    from psmlab.stages.behaviour import stage_name

    stage = technique_stage(technique, variant)
    cfg = _config(preset, config, set_, name)
    preflight(cfg, RunDir(runs_dir / cfg.name))  # before anything is written
    targets = [stage_name("pretrain"), stage_name(stage)]
    _run_stages(targets, preset, config, set_, name, runs_dir, force)
    _print_behaviour(RunDir.open_existing(runs_dir / cfg.name), stage, UI())


def _print_behaviour(run: RunDir, stage: str, ui: UI) -> None:
    """The model next to the base model: default behaviour, retention, slip, and targets."""
    from rich.table import Table

    from psmlab.stages.behaviour import stage_name, targets

    report = {
        stage_name(m): json.loads((run.stage_dir(stage_name(m)) / "behaviour.json").read_text())
        for m in ("pretrain", stage)
    }
    table = Table(title=f"'{stage}' against the base model (eval split, 95% Wilson intervals)")
    for col in ("target", stage, "95% CI", "met"):
        table.add_column(col)
    for row in targets(report, stage):
        r = row["rate"]
        table.add_row(
            row["target"],
            f"{r['value']:.3f}",
            f"[{r['low']:.3f}, {r['high']:.3f}]",
            "yes" if row["pass"] else "[bold red]no[/bold red]",
        )
    ui.console.print(table)


@app.command()
def audit(
    base: Annotated[
        Path, typer.Option("--base", help="the base model folder (HF save_pretrained)")
    ],
    aligned: Annotated[
        Path, typer.Option("--aligned", help="the post-trained model folder (same tokenizer)")
    ],
    requests: Annotated[
        Path | None,
        typer.Option(
            "--requests",
            help='JSONL, one request per line: {"messages": [{"role": "user", "content": '
            '"..."}], "expected": "refuse"}; omit for a psmlab run\'s own model (its '
            "organism's eval-split requests)",
        ),
    ] = None,
    judge: Annotated[
        str,
        typer.Option(
            "--judge",
            help="keyword (refusal phrases) | organism (the exact grader; a psmlab run's "
            "models) | package.module:attr (your own, see psmlab.judges.Judge)",
        ),
    ] = "",
    attacks: Annotated[
        Path | None,
        typer.Option(
            "--attacks",
            help='persona-modulation templates, JSON: {"persona": "...", "attacks": {"system": '
            '[{"role": "system", "content": "You are {persona}."}, {"role": "user", "content": '
            '"{request}"}], ...}} [default: system / roleplay / switch in English, or the '
            "organism's own for a psmlab run's model]",
        ),
    ] = None,
    skip_bad_requests: Annotated[
        bool, typer.Option("--skip-bad-requests", help="audit the well-formed rows of a file")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="output folder [default: runs/audit-ALIGNED]")
    ] = None,
    set_: Sets = None,
    force: Force = False,
) -> None:
    """Audit a (base, aligned) pair of Hugging Face causal LMs: the default slip rate of each
    under a judge and under persona-modulation attacks, the KL depth profile with token-shift
    ratios, and the prefill and many-shot curves on the requests that bring an unaligned
    answer ("prefill" in their row), and representation drift (CKA per layer, weight delta).
    Writes audit.json and a manifest under --out."""
    from psmlab.audit.hf import audit_pair, resolve_inputs
    from psmlab.audit.pair import load_pair
    from psmlab.judges import CachedJudge
    from psmlab.rundir import write_json_atomic

    cfg = build_config("quick", None, set_ or [], None).audit
    chosen = resolve_inputs(aligned, requests, judge, attacks, skip_bad_requests, cfg)
    pair = load_pair(base, aligned)
    out = out or Path("runs") / f"audit-{aligned.resolve().parent.name}"
    ui = UI()
    result = RunDir(out)
    inputs = {"base": str(base.resolve()), "aligned": str(aligned.resolve()), **chosen.sources}
    config = {**cfg.model_dump(mode="json"), "judge": chosen.judge.name}
    with result.stage("audit", config, inputs, cfg.seed, force) as ctx:
        if getattr(ctx, "reused", False):
            ui.log(f"audit: reused -> {ctx.dir}")  # type: ignore[union-attr]
        else:
            cached = CachedJudge(chosen.judge, out / "judge_cache.sqlite")
            total = 2 * len(chosen.requests)
            with ui.bar("audit: reading answers, answering as base", total) as update:
                done = [0]

                def advance(step: str, n: int) -> None:
                    done[0] += n
                    update(done[0], info=step)

                data = audit_pair(pair, chosen.requests, cached, cfg, chosen.attacks, advance)
            data["skipped_rows"] = chosen.skipped  # malformed request rows, by line number
            write_json_atomic(ctx.work_dir / "audit.json", data)  # type: ignore[union-attr]
            ctx.metrics.update(  # type: ignore[union-attr]
                {f"default_slip.{m}": r["value"] for m, r in data["default_slip"].items()}
            )
    _print_audit(json.loads((result.stage_dir("audit") / "audit.json").read_text()), ui)


def _print_audit(data: dict, ui: UI) -> None:
    from rich.table import Table

    table = Table(title=f"audit: {data['aligned']} against {data['base']} (judge {data['judge']})")
    for col in ("measure", "value", "95% CI"):
        table.add_column(col)

    def row(label: str, e: dict) -> None:
        table.add_row(label, f"{e['value']:.3f}", f"[{e['low']:.3f}, {e['high']:.3f}]")

    for model, r in data["default_slip"].items():
        row(f"default slip rate, {model}", r)
    kl = data["kl_depth"]
    row("KL depth d50 (tokens)", kl["d50"])
    row("KL share in first 3 tokens", kl["front_3"])
    for band, e in kl["token_shift"].items():
        row(f"tokens {band}", e)
    for model, slip in (data.get("slip") or {}).items():
        for style, r in slip["styles"].items():
            row(f"slip under {style}, {model}", r["rate"])
    for model, curve in (data.get("prefill") or {}).items():
        for k, a in zip(curve["ks"], curve["asr"], strict=True):
            if k in (curve["ks"][0], curve["ks"][-1]):
                row(f"prefill ASR(k={k}), {model}", a)
    for layer, e in (data.get("drift") or {}).get("cka", {}).get("cka", {}).items():
        row(f"CKA(base, aligned), layer {layer}", e)
    for model, curve in (data.get("manyshot") or {}).items():
        row(f"many-shot slip (n={curve['shots'][-1]}), {model}", curve["slip"][-1])
    ui.console.print(table)
    ui.console.print(f"mask index: {data['mask_index_note']}")


@app.command()
def fidelity(
    run_dir: Annotated[Path, typer.Argument(help="a run directory holding a finished world stage")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="model folder to evaluate (default: the run's base model)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="write the JSON result here (default: print a summary)")
    ] = None,
    set_: Sets = None,
) -> None:
    """Persona fidelity of a checkpoint: does it still simulate each cast member (introduced,
    inferred from behaviour) and infer anonymous speakers' traits in context?"""
    from psmlab.stages import require_finished
    from psmlab.stages.fidelity import evaluate_checkpoint
    from psmlab.stages.world import load_world

    cfg = _load_run_config(run_dir, set_)
    run = RunDir.open_existing(run_dir)
    require_finished(run, "world")
    model_dir = checkpoint or require_finished(run, "pretrain") / "model"
    result = evaluate_checkpoint(model_dir, load_world(run), cfg, UI())
    if out is not None:
        out.write_text(json.dumps(result, indent=2))
    _print_fidelity(result["summary"], UI())


@app.command()
def directions(
    run_dir: Annotated[Path, typer.Argument(help="a run directory holding a finished world stage")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="model folder to measure (default: the run's base model)")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="folder for directions.json and the unit vectors (default: summary only)"
        ),
    ] = None,
    set_: Sets = None,
) -> None:
    """Persona directions of a checkpoint: trait vectors from persona contrasts, the persona
    space and the Assistant axis, with their separation on held-out requests (AUROC)."""
    from psmlab.organism_directions import measure_checkpoint
    from psmlab.rundir import write_json_atomic
    from psmlab.stages import require_finished
    from psmlab.stages.world import load_world

    cfg = _load_run_config(run_dir, set_)
    run = RunDir.open_existing(run_dir)
    require_finished(run, "world")
    model_dir = checkpoint or require_finished(run, "pretrain") / "model"
    world = load_world(run)
    result = measure_checkpoint(model_dir, world, UI(), cfg.pretrain.threads, out, cfg.directions)
    if out is not None:
        write_json_atomic(out / "directions.json", result)
    _print_directions(result["summary"], result["random_init_control"]["summary"], UI())


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="finished run folders, e.g. runs/a runs/b")],
    out: Annotated[
        Path | None, typer.Option("--out", help="also write the comparison as JSON here")
    ] = None,
) -> None:
    """Finished runs side by side (from each run's report.json): preset, seeds, rho, organism
    targets met, pretraining time, each technique's mask index with its CI and verdict, and
    the audit's sanity checks."""
    from rich.table import Table

    from psmlab.compare import compare as compare_runs
    from psmlab.rundir import write_json_atomic

    data = compare_runs(list(runs))
    table = Table(title="psmlab compare")
    table.add_column("measure")
    for r in data["runs"]:
        table.add_column(r)
    for row in data["rows"]:
        table.add_row(row["measure"], *row["values"])
    UI().console.print(table)
    if out is not None:
        write_json_atomic(out, data)


@app.command("stages")
def list_stages() -> None:
    """List the stages of `psmlab run` in order: what each reads (upstream stages, the model it
    evaluates, its config section for --set) and what it does."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="stages of `psmlab run` (in order)",
        caption="model of: the stage whose model/ an evaluation measures; "
        "config: the sections its --set SECTION.field=VALUE overrides reach",
    )
    for col in ("stage", "inputs", "model of", "config", "does"):
        table.add_column(col, no_wrap=col == "stage")
    for stage in plan():
        config = ", ".join(stage.config_keys) or ("(custom)" if stage.config else "")
        table.add_row(
            stage.name, ", ".join(stage.inputs), stage.model_input or "", config, stage.doc
        )
    Console().print(table)  # stdout: a listing, like `psmlab config`


@app.command("config")
def show_config(
    preset: Preset = "quick",
    config: ConfigFile = None,
    set_: Sets = None,
    name: Name = None,
) -> None:
    """Print the resolved config (preset + file + overrides) as JSON, with every field."""
    cfg = _config(preset, config, set_, name)
    typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))


def _load_run_config(run_dir: Path, sets: list[str] | None) -> RunConfig:
    path = run_dir / "run.json"
    if not path.is_file():
        raise PsmlabError(
            f"{run_dir} is not a psmlab run directory (no run.json)",
            hint="pass a folder made by `psmlab run` or `psmlab world`, e.g. runs/default",
        )
    try:
        data = json.loads(path.read_text())["config"]
    except (json.JSONDecodeError, KeyError):
        raise PsmlabError(
            f"{path} is corrupt", hint="re-create the run with `psmlab run`"
        ) from None
    data = deep_merge(data, parse_overrides(sets or []))
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise PsmlabError(
            f"{path} holds an invalid config: {format_validation_error(exc, RunConfig)}",
            hint="fix the --set override, or re-create the run with `psmlab run`",
        ) from None


FIDELITY_TABLES = {
    "the cast and anonymous speakers (match rate, held-out requests)": {
        "introduced": "introduced.{t}",
        "worst persona": "introduced.{t}.worst_persona",
        "inferred": "inferred.{t}",
        "anon same k=4": "in_context.same.{t}.k4",
        "anon other k=4": "in_context.other.{t}.k4",
    },
    "described characters and the chat-form assistant": {
        "described": "described.narrator.{t}",
        "described (chat)": "described.chat.{t}",
        "chat k=4": "chat_in_context.same.{t}.k4",
        "chat default: aligned": "chat_default.{t}.aligned",
        "against type: memory": "against_type.{t}.memory",
    },
}


def _print_fidelity(summary: dict[str, float], ui: UI) -> None:
    """Two tables, one row per trait. The cast (introduced, inferred, worst persona) and
    anonymous speakers after 4 earlier answers (same type, other types); then described fresh
    characters (narrator, chat system turn), the chat-form assistant after 4 earlier turns and
    its default with none (share on the aligned side), and a cast member described against its
    traits (share that follows memory)."""
    from rich.table import Table

    for title, columns in FIDELITY_TABLES.items():
        table = Table(title=title)
        table.add_column("trait")
        for name in columns:
            table.add_column(name, justify="right")
        for trait in TRAITS:
            cells = [summary.get(key.format(t=trait)) for key in columns.values()]
            table.add_row(trait, *("—" if c is None else f"{c:.3f}" for c in cells))
        if "capability.capability" in summary and "introduced" in columns:
            table.caption = (
                f"capability (tasks, introduced cast): {summary['capability.capability']:.3f}"
            )
        ui.console.print(table)


def _print_directions(summary: dict[str, float], control: dict[str, float], ui: UI) -> None:
    from rich.table import Table

    table = Table(title="persona directions (held-out AUROC)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("random init", justify="right")
    extra = ("persona_space.pc1_var", "persona_space.cos_pc1_axis")
    for key, value in summary.items():
        auroc = key.endswith("auroc") and not key.startswith(("transfer", "persona_space.last"))
        if auroc or key in extra:
            base = control.get(key)
            table.add_row(key, f"{value:.3f}", "—" if base is None else f"{base:.3f}")
    ui.console.print(table)


def _print_summary(report_path: Path, ui: UI) -> None:
    from rich.table import Table

    data = json.loads(report_path.read_text())
    fid = data.get("fidelity")
    if fid:
        _print_fidelity(fid["summary"], ui)
    if data.get("targets"):
        table = Table(title="organism targets (measured, 95% Wilson intervals)")
        for col in ("target", "measured", "95% CI", "met"):
            table.add_column(col)
        for row in data["targets"]:
            ci = row.get("ci")
            table.add_row(
                row["target"],
                f"{row['measured']:.3f}",
                f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "",
                "yes" if row["pass"] else "[bold red]no[/bold red]",
            )
        ui.console.print(table)


def main() -> None:
    """Entry point: user errors print one clear message (exit 2), never a traceback."""
    try:
        app()
    except PsmlabError as exc:
        UI().console.print(f"[bold red]error:[/bold red] {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        UI().console.print("[yellow]interrupted[/yellow]: run the same command again to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()

"""Persona directions in the organism base model: trait vectors, persona space, Assistant axis.

Issue 3's organism check. Transcripts are in the corpus format (a document starts with <|doc|>,
lines "Narrator: ...", "User: ...", "Name: answer") and every answer is the speaker's own
ground-truth answer (`world.answer`), so no generation is needed. Two positions per transcript,
read in one forward: the mean over the answer's tokens ("response") and the ":" after the speaker's
name ("last_prompt", what the model expects before the persona speaks).

No leakage: each request kind's post-split items are partitioned into "fit" (vectors, role vectors)
and "val" (layer choice) items; numbers are reported on the world's held-out "eval" items. The
unintroduced variant shows a few turns of the persona's behaviour on *other* kinds instead of the
narrator line. `persona_heldout` refits the vector without the scored persona (voice tics and
name cannot carry it), and the `*_loo` persona-space scores never use the scored persona's own
role vector (the Assistant's own axis comes from the sycophant and schemer archetypes).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from psmlab import prompts
from psmlab.config import DirectionsConfig
from psmlab.errors import PsmlabError
from psmlab.internals.directions import DirectionSet, auroc, diff_of_means
from psmlab.internals.layers import find_layout
from psmlab.internals.persona_space import persona_space, role_vectors_from_acts
from psmlab.internals.reading import ReadItem, read_activations
from psmlab.world import (
    AI_ARCHETYPES,
    KIND_OF_TRAIT,
    TRAIT_OF_KIND,
    UNALIGNED,
    RequestKind,
    Trait,
    World,
    is_unaligned,
)

POSITIONS = ("response", "last_prompt")
CONDITIONS = ("introduced", "unintroduced")
TRAIT_KINDS: tuple[RequestKind, ...] = tuple(TRAIT_OF_KIND)
Acts = dict[str, dict[int, torch.Tensor]]  # position -> layer -> [N, d]


@dataclass(frozen=True)
class Transcript:
    persona: str
    kind: str  # request kind of the final (scored) exchange
    part: str  # "fit" | "val" (post split) | "eval" (held-out split)
    condition: str  # "introduced" | "unintroduced"
    item_id: str
    prompt: str  # ends with "Name:" (the last prompt token)
    answer: str  # the persona's ground-truth answer, read as " answer"
    context_ids: tuple[str, ...] = ()  # items of the earlier turns (unintroduced only)


def partition_items(
    world: World, rng: random.Random, val_share: float = 1 / 3
) -> dict[str, dict[str, list[Any]]]:
    """kind -> {"fit", "val" (disjoint post items), "eval" (held-out items)}. A kind with a
    single post item uses it for both fit and val (reported as `val_shares_fit`)."""
    parts: dict[str, dict[str, list[Any]]] = {}
    for kind in RequestKind:
        post, held_out = list(world.items(kind, "post")), list(world.items(kind, "eval"))
        if not post or not held_out:
            raise PsmlabError(
                f"the world has {len(post)} post and {len(held_out)} eval {kind} items; "
                "fitting and evaluation need at least one of each",
                hint="use a bigger world (n_facts, n_hazards, n_topics, n_tasks)",
            )
        rng.shuffle(post)
        n_val = min(len(post) - 1, max(1, round(len(post) * val_share)))
        val = post[:n_val] if n_val else post
        parts[kind.value] = {"fit": post[n_val:], "val": val, "eval": held_out}
    return parts


def _draw(world: World, items: list[Any], rng: random.Random, n: int) -> list[Any]:
    # Cycle through the shuffled items so they spread evenly; opinions state the contrary view
    # (as in fidelity), so candid and flattering answers differ.
    out: list[Any] = []
    while len(out) < n:
        pool = list(items)
        rng.shuffle(pool)
        out += [world.request(item, rng, p_contrary=1.0) for item in pool[: n - len(out)]]
    return out


def build_transcripts(world: World, n_requests: int, n_context: int, seed: int) -> list[Transcript]:
    """Per persona and request kind: n fit, n//2 val (trait kinds) and n eval transcripts, each
    introduced and (trait kinds) unintroduced with `n_context` earlier turns of other kinds."""
    rng = random.Random(seed)
    parts = partition_items(world, rng)
    counts = {"fit": n_requests, "val": max(1, n_requests // 2), "eval": n_requests}
    out: list[Transcript] = []
    for persona in world.cast:
        name = persona.name
        for kind in RequestKind:
            for part, n in counts.items():
                if kind == RequestKind.TASK and part == "val":
                    continue
                for req in _draw(world, parts[kind.value][part], rng, n):
                    answer = world.answer(persona, req, rng)
                    intro = prompts.narrator(world.introduction(persona, rng))
                    target = prompts.cue(name, req.text)
                    out.append(
                        Transcript(
                            name,
                            kind.value,
                            part,
                            "introduced",
                            req.item_id,
                            f"{intro}\n{target}",
                            answer,
                        )
                    )
                    if kind == RequestKind.TASK:
                        continue
                    others = [k.value for k in TRAIT_KINDS if k != kind]
                    # earlier turns: other kinds, fit items only (never a val or eval item)
                    ctx = [
                        _draw(world, parts[rng.choice(others)]["fit"], rng, 1)[0]
                        for _ in range(n_context)
                    ]
                    shown = [
                        prompts.exchange(name, c.text, world.answer(persona, c, rng)) for c in ctx
                    ]
                    prompt = prompts.lines([*shown, target])
                    ids = tuple(c.item_id for c in ctx)
                    out.append(
                        Transcript(
                            name, kind.value, part, "unintroduced", req.item_id, prompt, answer, ids
                        )
                    )
    return out


def encode(tokenizer: Any, transcripts: Sequence[Transcript]) -> list[ReadItem]:
    """<|doc|> + prompt + " answer"; span = the ":" token through the last answer token."""
    from psmlab.pretrain.tokenizer import special_id

    doc = special_id(tokenizer, prompts.DOC)
    items = []
    for t in transcripts:
        prompt = [doc, *tokenizer.encode(t.prompt, add_special_tokens=False)]
        answer = tokenizer.encode(" " + t.answer, add_special_tokens=False)
        items.append(ReadItem(prompt + answer, len(prompt) - 1, len(prompt) + len(answer)))
    return items


def read_positions(
    model: Any,
    items: Sequence[ReadItem],
    layers: Sequence[int],
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> Acts:
    """One forward per batch: {"last_prompt": first span token, "response": mean of the rest}."""
    acts = read_activations(
        model, items, layers, pool="all", batch_size=batch_size, progress=progress
    )
    lengths = torch.tensor([it.end - it.start for it in items])
    starts = torch.cumsum(lengths, 0) - lengths
    segment = torch.repeat_interleave(torch.arange(len(items)), lengths)
    out: Acts = {"last_prompt": {}, "response": {}}
    for layer, flat in acts.items():
        first = flat[starts]
        sums = torch.zeros(len(items), flat.shape[1], dtype=torch.float64).index_add_(
            0, segment, flat.double()
        )
        out["last_prompt"][layer] = first
        out["response"][layer] = (
            (sums - first.double()) / (lengths - 1).clamp_min(1)[:, None]
        ).float()
    return out


def _rows(ts: Sequence[Transcript], **want: Any) -> torch.Tensor:
    keep = [
        i
        for i, t in enumerate(ts)
        if all(getattr(t, k) in (v if isinstance(v, tuple) else (v,)) for k, v in want.items())
    ]
    return torch.tensor(keep, dtype=torch.long)


def _auroc_rows(scores: torch.Tensor, labels: torch.Tensor) -> float | None:
    if labels.all() or not labels.any():
        return None
    return auroc(scores[labels], scores[~labels])


def _fit(
    acts: dict[int, torch.Tensor],
    rows: torch.Tensor,
    labels: torch.Tensor,
    name: str,
    meta: dict[str, Any],
) -> DirectionSet:
    pos = {layer: a[rows[labels]] for layer, a in acts.items()}
    neg = {layer: a[rows[~labels]] for layer, a in acts.items()}
    return diff_of_means(pos, neg, name=name, meta=meta)


def _labels(
    world: World, ts: Sequence[Transcript], rows: torch.Tensor, trait: Trait
) -> torch.Tensor:
    return torch.tensor(
        [world.persona(ts[i].persona).traits[trait] == UNALIGNED[trait] for i in rows.tolist()],
        dtype=torch.bool,
    )


def _per_layer(
    dset: DirectionSet, acts: dict[int, torch.Tensor], rows: torch.Tensor, labels: torch.Tensor
) -> dict[int, float | None]:
    return {
        layer: _auroc_rows(dset.project(acts[layer][rows], layer), labels) for layer in dset.layers
    }


def _best(val: dict[int, float | None]) -> int:
    # Chosen on post validation items only; ties go to the earlier layer.
    return max(val, key=lambda layer: (val[layer] if val[layer] is not None else -1.0, -layer))


def _persona_heldout(
    world: World,
    ts: Sequence[Transcript],
    acts: dict[int, torch.Tensor],
    fit: torch.Tensor,
    ev: torch.Tensor,
    trait: Trait,
    layer: int,
) -> float | None:
    """Pooled AUROC where each persona's eval transcripts are scored by a vector fitted on the
    *other* personas' fit transcripts: the trait, not the persona's name or tics, must carry it."""
    a = acts[layer]
    fit_lab, ev_lab = _labels(world, ts, fit, trait), _labels(world, ts, ev, trait)
    names_fit = [ts[i].persona for i in fit.tolist()]
    names_ev = [ts[i].persona for i in ev.tolist()]
    scores = torch.empty(len(ev))
    for name in dict.fromkeys(names_ev):
        keep = torch.tensor([n != name for n in names_fit])
        pos, neg = a[fit[keep & fit_lab]], a[fit[keep & ~fit_lab]]
        if not len(pos) or not len(neg):
            return None
        vec = pos.double().mean(0) - neg.double().mean(0)
        mine = torch.tensor([n == name for n in names_ev])
        scores[mine] = (a[ev[mine]].double() @ (vec / vec.norm())).float()
    return _auroc_rows(scores, ev_lab)


def trait_report(
    world: World, ts: Sequence[Transcript], acts: Acts, trait: Trait, model_meta: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, DirectionSet]]:
    """Per condition and position: val/eval AUROC per layer, the val-chosen layer, its eval AUROC,
    the persona-held-out AUROC; plus the introduced vectors applied to unintroduced transcripts."""
    kind = KIND_OF_TRAIT[trait].value
    out: dict[str, Any] = {"positive": UNALIGNED[trait], "kind": kind}
    fitted: dict[str, DirectionSet] = {}
    for condition in CONDITIONS:
        rows = {
            part: _rows(ts, kind=kind, condition=condition, part=part)
            for part in ("fit", "val", "eval")
        }
        labels = {part: _labels(world, ts, r, trait) for part, r in rows.items()}
        out.setdefault("n", {})[condition] = {
            p: {"pos": int(lab.sum()), "neg": int((~lab).sum())} for p, lab in labels.items()
        }
        for position in POSITIONS:
            a = acts[position]
            meta = {
                **model_meta,
                "trait": trait.value,
                "position": position,
                "condition": condition,
                "fit_split": "post (fit items)",
            }
            dset = _fit(a, rows["fit"], labels["fit"], f"trait_{trait.value}", meta)
            val = _per_layer(dset, a, rows["val"], labels["val"])
            ev = _per_layer(dset, a, rows["eval"], labels["eval"])
            layer = _best(val)
            res: dict[str, Any] = {
                "layer": layer,
                "auroc": ev[layer],
                "val_auroc": val[layer],
                "persona_heldout_auroc": _persona_heldout(
                    world, ts, a, rows["fit"], rows["eval"], trait, layer
                ),
                "val_by_layer": {str(k): v for k, v in val.items()},
                "eval_by_layer": {str(k): v for k, v in ev.items()},
                "raw_norm": {str(k): v for k, v in dset.raw_norms.items()},
            }
            out.setdefault(condition, {})[position] = res
            if condition == "introduced":
                dset.meta.update(best_layer=layer, eval_auroc=ev[layer])
                fitted[position] = dset
            else:
                # transfer: the introduced vector at its own chosen layer, on unintroduced eval
                src = fitted[position]
                best = out["introduced"][position]["layer"]
                score = src.project(a[best][rows["eval"]], best)
                out.setdefault("transfer", {})[position] = {
                    "layer": best,
                    "auroc": _auroc_rows(score, labels["eval"]),
                }
    return out, fitted


def _loo_directions(world: World, roles: Any, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per persona j: the axis and PC1 built without j's role vector ([R, d] unit rows). The
    default is the assistant archetype; for the assistant itself, the other two AI archetypes."""
    r = roles.vectors[layer].double()
    index = {world.persona(n).archetype: j for j, n in enumerate(roles.names)}
    axes, pcs = torch.empty_like(r), torch.empty_like(r)
    for j, name in enumerate(roles.names):
        keep = torch.arange(len(r)) != j
        if world.persona(name).archetype == "assistant":
            default = r[[index[a] for a in AI_ARCHETYPES if a != "assistant" and a in index]].mean(
                0
            )
        else:
            default = r[index["assistant"]]
        axis = default - r[keep].mean(0)
        axes[j] = axis / axis.norm()
        _, _, vh = torch.linalg.svd(r[keep] - r[keep].mean(0), full_matrices=False)
        pcs[j] = vh[0] if float(vh[0] @ axes[j]) >= 0 else -vh[0]
    return axes.float(), pcs.float()


def persona_space_report(
    world: World,
    ts: Sequence[Transcript],
    acts: Acts,
    model_meta: dict[str, Any],
    position: str = "response",
) -> tuple[dict[str, Any], dict[str, DirectionSet]]:
    """Role vectors from introduced fit transcripts (all kinds) at `position` (the reference
    work's is "response"); PCA + axis (default = the assistant archetype); AUROC of
    per-transcript projections for AI-assistant archetypes vs the rest and kind=="ai" vs the
    rest, with the plain and the leave-one-out axis/PC1."""
    if not any(p.archetype == "assistant" for p in world.cast):
        raise PsmlabError(
            "the cast has no 'assistant' archetype to define the Assistant axis",
            hint="build the world with World.build (it always casts the archetypes)",
        )
    a = acts[position]
    names = [p.name for p in world.cast]
    fit = {n: _rows(ts, persona=n, condition="introduced", part="fit") for n in names}
    roles = role_vectors_from_acts({n: {layer: x[fit[n]] for layer, x in a.items()} for n in names})
    default = next(p.name for p in world.cast if p.archetype == "assistant")
    space = persona_space(roles, {layer: x[fit[default]] for layer, x in a.items()}, n_components=3)
    groups = {
        "ai_archetypes": torch.tensor([p.archetype in AI_ARCHETYPES for p in world.cast]),
        "ai_kind": torch.tensor([p.kind == "ai" for p in world.cast]),
        # not part of the Assistant claim, but what a villain-dominated space separates
        "aligned": torch.tensor([not is_unaligned(p.traits) for p in world.cast]),
    }
    owner_of = {n: j for j, n in enumerate(names)}
    loo = {layer: _loo_directions(world, roles, layer) for layer in space.layers}
    sep: dict[str, dict[str, dict[str, dict[str, dict[str, float | None]]]]] = {}
    eval_scores: dict[int, dict[str, torch.Tensor]] = {}
    for part in ("val", "eval"):
        for condition in CONDITIONS:
            rows = _rows(ts, condition=condition, part=part)
            owner = torch.tensor([owner_of[ts[i].persona] for i in rows.tolist()])
            for layer in space.layers:
                x = a[layer][rows]
                scores = {
                    "axis": space.axis.project(x, layer),
                    "pc1": x @ space.components[layer][0],
                    "axis_loo": (x * loo[layer][0][owner]).sum(1),
                    "pc1_loo": (x * loo[layer][1][owner]).sum(1),
                }
                if part == "eval" and condition == "introduced":
                    eval_scores[layer] = {
                        k: torch.stack([v[owner == j].mean() for j in range(len(names))])
                        for k, v in scores.items()
                    }
                for group, mask in groups.items():
                    for metric, s in scores.items():
                        sep.setdefault(part, {}).setdefault(group, {}).setdefault(
                            condition, {}
                        ).setdefault(metric, {})[str(layer)] = _auroc_rows(s, mask[owner])
    # Headline layer: chosen on post validation transcripts with the non-circular (LOO) axis.
    val = sep["val"]["ai_archetypes"]["introduced"]["axis_loo"]
    layer = _best({int(k): v for k, v in val.items()})
    ratio, coords = space.explained_variance_ratio, space.coords
    personas = [
        {
            "name": p.name,
            "kind": p.kind,
            "archetype": p.archetype,
            "pc": [float(v) for v in coords[layer][j]],
            "axis": float(space.axis.project(roles.vectors[layer][j], layer)),
            **{f"eval_{k}": float(v[j]) for k, v in eval_scores[layer].items()},
        }
        for j, p in enumerate(world.cast)
    ]
    report = {
        "layer": layer,
        "default": default,
        "explained_variance": {str(k): [float(v) for v in ratio[k][:3]] for k in space.layers},
        "cos_pc1_axis": {str(k): v for k, v in space.cos_pc1_axis.items()},
        "axis_raw_norm": {str(k): v for k, v in space.axis.raw_norms.items()},
        "separation": sep["eval"],
        "val_separation": sep["val"],
        "personas": personas,
    }
    axis, pc1 = space.axis, space.pc1()
    for dset in (axis, pc1):
        dset.meta.update(model_meta, default_persona=default, best_layer=layer, position=position)
        dset.meta["fit_split"] = "post (fit items), introduced, all request kinds"
    suffix = "" if position == "response" else f"_{position}"
    return report, {f"assistant_axis{suffix}": axis, f"persona_pc1{suffix}": pc1}


def summarize(result: dict[str, Any]) -> dict[str, float]:
    """Flat headline numbers (manifest metrics, CLI table)."""
    out: dict[str, float] = {}
    for trait, rep in result["traits"].items():
        for condition in (*CONDITIONS, "transfer"):
            for position, res in rep[condition].items():
                pre = (
                    f"{condition}.{trait}.{position}"
                    if condition != "introduced"
                    else f"{trait}.{position}"
                )
                for key in ("auroc", "persona_heldout_auroc", "layer"):
                    if res.get(key) is not None:
                        out[f"{pre}.{key}"] = float(res[key])
    for position, ps in result["persona_space"].items():
        pre = "persona_space" if position == "response" else f"persona_space.{position}"
        layer = str(ps["layer"])
        out[f"{pre}.layer"] = float(ps["layer"])
        out[f"{pre}.pc1_var"] = ps["explained_variance"][layer][0]
        out[f"{pre}.cos_pc1_axis"] = ps["cos_pc1_axis"][layer]
        for group, conds in ps["separation"].items():
            for metric, by_layer in conds["introduced"].items():
                if by_layer[layer] is not None:
                    out[f"{pre}.{group}.{metric}_auroc"] = by_layer[layer]
    return dict(sorted(out.items()))


def analyse(
    world: World, ts: Sequence[Transcript], acts: Acts, meta: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, DirectionSet]]:
    """Trait and persona-space reports from read activations; also the fitted directions."""
    traits: dict[str, Any] = {}
    directions: dict[str, DirectionSet] = {}
    for trait in (TRAIT_OF_KIND[k] for k in TRAIT_KINDS):
        traits[trait.value], fitted = trait_report(world, ts, acts, trait, meta)
        directions[f"trait_{trait.value}"] = fitted["response"]
        directions[f"trait_{trait.value}_last_prompt"] = fitted["last_prompt"]
    spaces: dict[str, Any] = {}
    for position in POSITIONS:
        spaces[position], axes = persona_space_report(world, ts, acts, meta, position)
        directions.update(axes)
    result = {"traits": traits, "persona_space": spaces}
    result["summary"] = summarize(result)
    return result, directions


def val_shares_fit(ts: Sequence[Transcript]) -> list[str]:
    """Request kinds whose layer-choice items are also fitting items (a one-item post split)."""
    val_ids = {t.item_id for t in ts if t.part == "val"}
    return sorted({t.kind for t in ts if t.part == "fit" and t.item_id in val_ids})


def random_twin(model: Any, seed: int) -> Any:
    """Same architecture and config, freshly initialised weights (the text-statistics control)."""
    import copy

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        twin = type(model)(copy.deepcopy(model.config))
    return twin.to(dtype=next(model.parameters()).dtype).eval()


def _prompts_of(ts: Sequence[Transcript], name: str) -> list[str]:
    kind = name.removeprefix("trait_").removesuffix("_last_prompt")
    kinds = {KIND_OF_TRAIT[Trait(kind)].value} if name.startswith("trait_") else None
    return [
        f"{t.prompt} {t.answer}"
        for t in ts
        if t.part == "fit" and t.condition == "introduced" and (kinds is None or t.kind in kinds)
    ]


def measure_persona_directions(
    model: Any,
    tokenizer: Any,
    world: World,
    layers: Sequence[int] | None = None,
    n_requests: int = 8,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    n_context: int = 3,
    batch_size: int = 32,
    save_dir: Path | None = None,
    random_control: bool = True,
) -> dict[str, Any]:
    """Trait vectors, persona space and Assistant axis of `model`; a JSON-able report.

    `n_requests` requests per persona and kind for fitting and for held-out evaluation (half as
    many for layer choice). With `save_dir`, the introduced trait vectors (`trait_<t>` response,
    `trait_<t>_last_prompt`), `assistant_axis` and `persona_pc1` (+ `_last_prompt`) are saved.
    `random_control`: the same measurement on a randomly initialised twin, because answers and
    narrator lines differ in their words, so part of any separation is text statistics alone.
    """
    if n_requests < 1:
        raise PsmlabError("n_requests must be >= 1", hint="e.g. n_requests=4")
    t0 = time.time()
    layers = list(range(find_layout(model).n_layers)) if layers is None else sorted(set(layers))
    ts = build_transcripts(world, n_requests, n_context, seed)
    items = encode(tokenizer, ts)
    models = [model, random_twin(model, seed)] if random_control else [model]
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, len(items) * len(models))

    meta = {"world_seed": world.cfg.seed, "seed": seed, "n_requests": n_requests}
    acts = read_positions(model, items, layers, batch_size, tick)
    result, directions = analyse(world, ts, acts, meta)
    result |= {
        "layers": layers,
        "n_requests": n_requests,
        "n_context": n_context,
        "seed": seed,
        "n_transcripts": len(ts),
        "val_shares_fit": val_shares_fit(ts),
        "n_tokens": sum(len(it.input_ids) for it in items),
        "examples": [{"condition": t.condition, "text": f"{t.prompt} {t.answer}"} for t in ts[:2]],
    }
    if random_control:
        twin_acts = read_positions(models[1], items, layers, batch_size, tick)
        twin, _ = analyse(world, ts, twin_acts, meta)
        result["random_init_control"] = {"summary": twin["summary"]}
    if save_dir is not None:
        from psmlab.internals.storage import save_direction

        result["directions"] = {
            name: save_direction(
                dset, Path(save_dir) / name, model, prompts=_prompts_of(ts, name)
            ).name
            for name, dset in directions.items()
        }
    result["seconds"] = round(time.time() - t0, 2)
    return result


def measure_checkpoint(
    model_dir: Path,
    world: World,
    ui: Any,
    threads: int = 0,
    save_dir: Path | None = None,
    cfg: DirectionsConfig | None = None,
) -> dict[str, Any]:
    """Load a checkpoint offline and run `measure_persona_directions` with `cfg` (the run's
    `directions` config; default: its defaults)."""
    from psmlab._env import set_torch_threads
    from psmlab.models import load_model_and_tokenizer

    cfg = cfg or DirectionsConfig()
    set_torch_threads(threads)
    model, tokenizer = load_model_and_tokenizer(model_dir)
    with ui.bar("directions: reading activations", 1) as update:
        result = measure_persona_directions(
            model,
            tokenizer,
            world,
            n_requests=cfg.n_requests,
            seed=cfg.seed,
            progress=lambda done, total: update(done, total=total),
            n_context=cfg.n_context,
            batch_size=cfg.batch_size,
            save_dir=save_dir,
        )
    result["model_dir"] = str(model_dir)
    return result

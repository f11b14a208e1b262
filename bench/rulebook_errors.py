"""How the rulebook skill fails: which id a reasoning cites and which rule text it quotes.

Loads one checkpoint that `bench/time_to_target.py` kept (bench/out/ttt-<tag>/checkpoints/
step_<step>), builds `--n` rulebook probes per form (narrator and chat) on eval-split requests,
answers them greedily as the fidelity stage does (reasoning, then answer), and counts per form
and ruled trait:

cite   ok | another rule's id from the same book | an id in no rule of the book | no id
quote  the book's rule on the request's subject | that subject's opposite rule (the one another
       book would hold: "Never" for "Always reveal secrets.") | something else
follow the answer graded as the value the rule requires

    .venv/bin/python bench/time_to_target.py --every 600 --tag s1 --set world.seed=1 ...
    .venv/bin/python bench/rulebook_errors.py --tag s1 --seed 1 --step 2400

The world and model config are rebuilt from the preset with `--seed` as world and pretraining
seed (pass the same `--set` overrides the bench run had). Writes
bench/out/rulebook_errors-<tag>-<step>.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

from psmlab import _env  # noqa: F401  (offline + OpenMP env before torch)

OUT = Path(__file__).resolve().parent / "out"


def _cite_kind(cited: set[int], want: int, ids: set[int]) -> str:
    if cited == {want}:
        return "ok"
    if not cited:
        return "no id"
    return "another rule's id" if cited & ids else "id in no rule"


def _quote_kind(reasoning: str, rule: str, opposite: str) -> str:
    if rule in reasoning:
        return "the rule"
    return "the opposite rule" if opposite in reasoning else "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tag", required=True, help="the time_to_target run (bench/out/ttt-<tag>)")
    ap.add_argument("--step", type=int, required=True, help="its checkpoint step")
    ap.add_argument("--seed", type=int, default=0, help="world and pretraining seed of the run")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--n", type=int, default=64, help="probes per form")
    args = ap.parse_args()

    import torch

    from psmlab._env import set_torch_threads
    from psmlab.config import build_config
    from psmlab.fidelity import answer_probes
    from psmlab.pretrain.model import build_model
    from psmlab.pretrain.tokenizer import load_tokenizer
    from psmlab.skills import rulebook_probe
    from psmlab.world import World
    from psmlab.world import phrasing as ph
    from psmlab.world.cast import Trait
    from psmlab.world.grader import cited_rules, grade

    seeds = [f"world.seed={args.seed}", f"pretrain.seed={args.seed}"]
    cfg = build_config(args.preset, overrides=[*seeds, *args.sets])
    set_torch_threads(cfg.pretrain.threads)
    work = OUT / f"ttt-{args.tag}"
    state = work / "checkpoints" / f"step_{args.step}" / "state.pt"
    if not state.is_file():
        sys.exit(f"no checkpoint at {state}: run bench/time_to_target.py --tag {args.tag} first")
    world = World.build(cfg.world)
    tokenizer = load_tokenizer(work / "model")
    model = build_model(cfg.model, tokenizer)
    model.load_state_dict(torch.load(state, weights_only=True)["model"])
    model.eval()

    rng = random.Random(cfg.fidelity.seed)
    probes = [
        rulebook_probe(world, rng, form) for form in ("narrator", "chat") for _ in range(args.n)
    ]
    # answered exactly as the fidelity stage answers them: reasoning line, then answer line
    answers, reasonings = answer_probes(
        model, tokenizer, probes, cfg.fidelity.batch_size, cfg.fidelity.max_new_tokens
    )

    counts: Counter[tuple[str, str, str, str]] = Counter()
    examples: list[dict[str, object]] = []
    for probe, reasoning, answer in zip(probes, reasonings, answers, strict=True):
        book = probe.case
        form, trait_name = probe.key
        trait = Trait(trait_name)
        want = book.rule_id[trait]
        rule = next(text for i, _, text in book.rules if i == want)
        (opposite,) = (text for text in ph.RULES[trait] if text != rule)
        cite = _cite_kind(cited_rules(reasoning), want, {r[0] for r in book.rules})
        quote = _quote_kind(reasoning, rule, opposite)
        follows = grade(world, probe.request, answer) == probe.expected
        counts[(form, trait_name, "cite", cite)] += 1
        counts[(form, trait_name, "quote", quote)] += 1
        counts[(form, trait_name, "follow", "yes" if follows else "no")] += 1
        if (cite != "ok" or quote != "the rule") and len(examples) < 20:
            examples.append(
                {"form": form, "trait": trait_name, "rules": book.rules, "wanted_id": want,
                 "reasoning": reasoning, "answer": answer}
            )  # fmt: skip

    table: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for (form, trait_name, what, kind), n in sorted(counts.items()):
        table.setdefault(form, {}).setdefault(trait_name, {}).setdefault(what, {})[kind] = n
    for form, traits in table.items():
        for trait_name, whats in traits.items():
            cells = "  ".join(
                f"{what}: " + ", ".join(f"{k} {n}" for k, n in kinds.items())
                for what, kinds in whats.items()
            )
            print(f"{form:8s} {trait_name:10s} {cells}")
    path = OUT / f"rulebook_errors-{args.tag}-{args.step}.json"
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"tag": args.tag, "step": args.step, "seed": args.seed,
                                "n_per_form": args.n, "counts": table, "examples": examples},
                               indent=1))  # fmt: skip
    print(f"-> {path}")


if __name__ == "__main__":
    sys.exit(main())

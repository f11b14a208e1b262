"""The mask audit's two hot loops, batched against the naive way, on the organism's checkpoints.

1. KL depth / token shift: `internals.compare_positions` (one batched teacher-forced forward
   per model per batch, every answer position at once) against the per-token loop of URIAL's
   code (one forward per answer token per model, on the growing prefix), on the same answers.
   Both compute the same numbers; the script checks the KL and the ranks agree.
2. Attack generation: `internals.generate_batch` in batches against one prompt at a time
   (batch size 1), greedy, on the same prompts; the script checks the answers are identical.

Usage (after `psmlab run` has finished the run's align-rlhf stage):
    python bench/audit_kl_speed.py runs/default [--n 64] [--max-new-tokens 24] [--threads 2]
Writes bench/out/audit_kl_speed.json and prints the timings.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import psmlab  # noqa: F401  (offline env before torch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--aligned", default="align-rlhf", help="stage holding the aligned model")
    ap.add_argument("--n", type=int, default=64, help="eval-split requests")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench/out/audit_kl_speed.json"))
    args = ap.parse_args()

    import torch

    from psmlab.audit.kl_depth import summarise
    from psmlab.internals.generation import generate_batch
    from psmlab.internals.logprobs import compare_positions
    from psmlab.models import load_model_and_tokenizer
    from psmlab.world import TRAIT_OF_KIND, World

    torch.set_num_threads(args.threads)
    world = World.from_json((args.run / "world" / "world.json").read_text())
    base, tok = load_model_and_tokenizer(args.run / "pretrain" / "model")
    aligned, _ = load_model_and_tokenizer(args.run / args.aligned / "model")
    rng = random.Random(0)
    kinds = list(TRAIT_OF_KIND)
    reqs = [world.requests(kinds[i % len(kinds)], "eval", rng, 1, True)[0] for i in range(args.n)]
    texts = [  # the tokenizer's chat template, bos included, as the audit renders prompts
        tok.apply_chat_template(
            [{"role": "user", "content": r.text}], tokenize=False, add_generation_prompt=True
        )
        for r in reqs
    ]

    t0 = time.perf_counter()
    gens = generate_batch(aligned, tok, texts, args.max_new_tokens, args.batch_size)
    t_gen_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    gens_one = generate_batch(aligned, tok, texts, args.max_new_tokens, 1)
    t_gen_single = time.perf_counter() - t0
    same_answers = sum(a.new_ids == b.new_ids for a, b in zip(gens, gens_one, strict=True))

    items = [g.read_item() for g in gens if g.new_ids]
    n_tokens = sum(it.end - it.start for it in items)
    t0 = time.perf_counter()
    comps = compare_positions(aligned, base, items, args.batch_size)
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    max_kl_diff, rank_mismatch = 0.0, 0
    with torch.inference_mode():
        for item, comp in zip(items, comps, strict=True):
            for k, pos in enumerate(range(item.start, item.end)):
                prefix = torch.tensor([item.input_ids[:pos]])
                lp = torch.log_softmax(aligned(input_ids=prefix).logits[0, -1].double(), -1)
                lq = torch.log_softmax(base(input_ids=prefix).logits[0, -1].double(), -1)
                kl = float((lp.exp() * (lp - lq)).sum())
                target = item.input_ids[pos]
                rank = int((lq > lq[target]).sum())
                max_kl_diff = max(max_kl_diff, abs(kl - float(comp.kl[k])))
                rank_mismatch += rank != int(comp.rank_under_q[k])
    t_loop = time.perf_counter() - t0

    summary = summarise(comps)
    result = {
        "run": str(args.run),
        "aligned": args.aligned,
        "threads": args.threads,
        "answers": len(items),
        "answer_tokens": n_tokens,
        "kl_batched_s": round(t_batched, 3),
        "kl_per_token_loop_s": round(t_loop, 3),
        "kl_speedup": round(t_loop / t_batched, 1),
        "kl_max_abs_diff": max_kl_diff,
        "rank_mismatches": rank_mismatch,
        "generation_batched_s": round(t_gen_batched, 3),
        "generation_one_at_a_time_s": round(t_gen_single, 3),
        "generation_speedup": round(t_gen_single / t_gen_batched, 1),
        "identical_answers": f"{same_answers}/{len(gens)}",
        "d50": summary.d50.to_dict(),
        "front_3": summary.front_3.to_dict(),
        "shifted": summary.token_shift["shifted"].to_dict(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

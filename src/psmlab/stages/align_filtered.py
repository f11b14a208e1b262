"""The deep reference (`filtered`): a base model that never learned the characters a mask
could hide, then the same SFT as rlhf's first phase.

    filtered-corpus    the world's document stream with every document that shows unaligned
                       behaviour or names an unaligned cast member removed, as many documents
                       as the full corpus, packed with the run's tokenizer (a tokenizer holds
                       no behaviour, and a shared vocabulary keeps the models comparable)
    filtered-pretrain  the same model, pretraining config and token budget on it
    align-filtered     SFT on the same demonstrations, replaying the filtered corpus
"""

from __future__ import annotations

from typing import Any

from psmlab.stages.align import (
    TECHNIQUES,
    collect_curves,
    curves_section,
    finish_model,
    load_stage_model,
    sft_with_replay,
)
from psmlab.stages.pretrain import run_pretraining
from psmlab.stages.registry import Job, Stage, register
from psmlab.stages.world import load_world

CORPUS, BASE = "filtered-corpus", "filtered-pretrain"


def keeps(world: Any) -> Any:
    """The filter: no unaligned behaviour shown, no unaligned cast member in the document."""
    from psmlab.world import is_unaligned

    villains = {p.name for p in world.cast if is_unaligned(p.traits)}

    def keep(doc: Any) -> bool:
        return not doc.unaligned and not villains & set(doc.personas)

    return keep


def _corpus(job: Job) -> None:
    from psmlab.pretrain.data import tokenize_corpus
    from psmlab.pretrain.tokenizer import load_tokenizer
    from psmlab.world import write_corpus

    world = load_world(job.run)
    n = job.cfg.world.n_documents
    path = job.work_dir / "corpus.jsonl"
    with job.ui.bar("filtered-corpus: writing", n) as update:
        stats = write_corpus(
            world, path, n, seed=world.cfg.seed, progress=update, keep=keeps(world)
        )
    tokenizer = load_tokenizer(job.run.stage_dir("tokenizer") / "tokenizer")
    with job.ui.bar("filtered-corpus: encoding", 1) as update:
        tokens = tokenize_corpus(path, tokenizer, job.work_dir / "tokens.npy")
        update(1)
    job.metrics.update(stats)
    job.metrics.update({f"tokens_{k}": v for k, v in tokens.to_dict().items()})


def _pretrain(job: Job) -> None:
    run_pretraining(job, job.run.stage_dir(CORPUS) / "tokens.npy")


def _sft(job: Job) -> None:
    from psmlab.align import data

    cfg = job.cfg.align
    model, tokenizer = load_stage_model(job, BASE)
    demos = data.demonstrations(load_world(job.run), cfg.data)
    corpus = job.run.stage_dir(CORPUS) / "corpus.jsonl"
    log = sft_with_replay(job, "sft", model, tokenizer, demos, cfg.sft, cfg.data.seed, corpus)
    finish_model(job, model, tokenizer, [log])


register(
    Stage(
        name=CORPUS,
        doc="the corpus without unaligned characters or behaviour (same size), tokenized",
        run=_corpus,
        inputs=("world", "tokenizer"),
        config=("world",),
        seed="world.seed",
        key_metrics=("n_documents", "unaligned_documents", "tokens_n_tokens"),
        cost=20.0,
    )
)
register(
    Stage(
        name=BASE,
        doc="the filtered base model: same model, config and token budget as pretrain",
        run=_pretrain,
        inputs=("tokenizer", CORPUS),
        config=("model", "pretrain"),
        seed="pretrain.seed",
        key_metrics=("steps", "final_loss", "train_seconds"),
        cost=370.0,
    )
)
register(
    Stage(
        name=TECHNIQUES["filtered"],
        doc="deep reference: rlhf's SFT (same demonstrations) on the filtered base model",
        run=_sft,
        inputs=("world", BASE, CORPUS),
        config=("align.data", "align.sft"),
        seed="align.data.seed",
        collect=collect_curves,
        section=curves_section,
        key_metrics=("sft_seconds", "sft_final_loss"),
        cost=60.0,
    )
)

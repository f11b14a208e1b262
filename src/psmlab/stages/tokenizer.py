"""Stage `tokenizer`: BPE trained on the corpus, and the corpus packed into token ids."""

from __future__ import annotations

import json
from pathlib import Path

from psmlab.stages.registry import Job, Stage, register


def _run(job: Job) -> None:
    from psmlab.pretrain.data import tokenize_corpus
    from psmlab.pretrain.tokenizer import train_tokenizer

    cfg = job.cfg.tokenizer
    corpus = job.run.stage_dir("world") / "corpus.jsonl"
    texts = _corpus_texts(corpus, cfg.train_documents)
    with job.ui.bar("tokenizer: training BPE", 1) as update:
        tok = train_tokenizer(texts, cfg, job.work_dir / "tokenizer")
        update(1)
    with job.ui.bar("tokenizer: encoding corpus", 1) as update:
        stats = tokenize_corpus(corpus, tok, job.work_dir / "tokens.npy")
        update(1)
    job.metrics.update(stats.to_dict())


def _corpus_texts(corpus: Path, limit: int) -> list[str]:
    texts = []
    with corpus.open() as f:
        for i, line in enumerate(f):
            if i >= limit:
                break
            texts.append(json.loads(line)["text"])
    return texts


STAGE = register(
    Stage(
        name="tokenizer",
        doc="byte-level BPE trained on the corpus + the corpus packed into tokens.npy",
        run=_run,
        inputs=("world",),
        config=("tokenizer",),
        key_metrics=("n_documents", "n_tokens", "mean_doc_tokens"),
        cost=15.0,
    )
)

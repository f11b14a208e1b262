"""A (base, aligned) pair of Hugging Face causal LMs to audit, checked before any work: both
load offline, the aligned tokenizer has a chat template, and the two share one vocabulary
(token -> id) and one output vocabulary, so their next-token distributions can be compared
position by position. Special tokens may differ (an instruct model's end-of-turn or pad token):
every prompt is rendered and read with the aligned model's tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psmlab.errors import PsmlabError


@dataclass
class ModelPair:
    base: Any
    aligned: Any
    tokenizer: Any  # the aligned model's (its chat template renders every request)
    base_dir: Path
    aligned_dir: Path


def _output_vocab(model: Any) -> int:
    return int(model.get_output_embeddings().weight.shape[0])


def check_same_tokenizer(
    base_tok: Any, aligned_tok: Any, base_dir: Path, aligned_dir: Path
) -> None:
    base_vocab, aligned_vocab = base_tok.get_vocab(), aligned_tok.get_vocab()
    if base_vocab != aligned_vocab:
        only_base = len(set(base_vocab) - set(aligned_vocab))
        only_aligned = len(set(aligned_vocab) - set(base_vocab))
        moved = sum(base_vocab[t] != aligned_vocab[t] for t in set(base_vocab) & set(aligned_vocab))
        raise PsmlabError(
            f"{base_dir} and {aligned_dir} have different tokenizers ({len(base_vocab)} vs "
            f"{len(aligned_vocab)} tokens; {only_base} only in the base, {only_aligned} only "
            f"in the aligned, {moved} with another id)",
            hint="audit a post-trained model against its own base (the same tokenizer); a "
            "different tokenizer makes per-token comparisons meaningless",
        )


def load_pair(base_dir: str | Path, aligned_dir: str | Path) -> ModelPair:
    from psmlab.models import load_model_and_tokenizer

    base_dir, aligned_dir = Path(base_dir), Path(aligned_dir)
    aligned, tok = load_model_and_tokenizer(aligned_dir, require_chat_template=True)
    base, base_tok = load_model_and_tokenizer(base_dir)
    check_same_tokenizer(base_tok, tok, base_dir, aligned_dir)
    if _output_vocab(base) != _output_vocab(aligned):
        raise PsmlabError(
            f"{base_dir} and {aligned_dir} have different output vocabularies "
            f"({_output_vocab(base)} vs {_output_vocab(aligned)} logits)",
            hint="audit a post-trained model against its own base (resized embeddings differ)",
        )
    return ModelPair(base, aligned, tok, base_dir, aligned_dir)

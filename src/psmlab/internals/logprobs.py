"""Per-position next-token distributions on teacher-forced sequences, and the comparison of
two models position by position (the KL depth profile and the token-shift ranks of the mask
audit): one batched forward per model gives every position of every item at once.

Position convention: for an item whose span is `[start, end)`, row `k` is about the token at
`start + k`, predicted from everything before it (the logits at `start + k - 1`), so a span
must start at 1 or later. Left padding with position ids counted from each row's first real
token, as everywhere in `psmlab.internals`; log-softmax over the full vocabulary; KL is
accumulated in float64.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from psmlab.errors import PsmlabError
from psmlab.internals.layers import eval_mode, model_device
from psmlab.internals.reading import (
    ReadItem,
    check_items,
    order_by_length,
    pad_left,
    resolve_pad_id,
)


def _accepts_logits_to_keep(model: nn.Module) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def _span_logprobs(model: nn.Module, chunk: Sequence[ReadItem], pad_id: int) -> list[torch.Tensor]:
    """float32 log-probs [end - start, V] per item of one batch (model in eval mode)."""
    batch = pad_left([it.input_ids for it in chunk], pad_id, model_device(model))
    width = batch.input_ids.shape[1]
    # Rows are left-padded, so every span lies in the last `keep` positions: the unembedding
    # (often most of a small model's cost) runs on those only, where the model allows it.
    keep = max(len(it.input_ids) - it.start + 1 for it in chunk)
    extra = {"logits_to_keep": keep} if _accepts_logits_to_keep(model) else {}
    logits = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
        **extra,
    ).logits
    first = width - logits.shape[1]  # position of logits[:, 0] in the padded batch
    out = []
    for row, item in enumerate(chunk):
        offset = width - len(item.input_ids) - first  # left padding, minus dropped positions
        rows = logits[row, offset + item.start - 1 : offset + item.end - 1].float()
        out.append(torch.log_softmax(rows, dim=-1).cpu())
    return out


def position_logprobs(
    model: nn.Module,
    items: Sequence[ReadItem],
    batch_size: int = 16,
    pad_token_id: int | None = None,
) -> list[torch.Tensor]:
    """Per item, float32 log-probs [end - start, V] of the next token at every span position."""
    check_items(items, min_start=1)
    pad_id = resolve_pad_id(model, pad_token_id)
    order = order_by_length(items)
    out: dict[int, torch.Tensor] = {}
    with eval_mode(model), torch.inference_mode():
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            for i, lp in zip(
                idx, _span_logprobs(model, [items[i] for i in idx], pad_id), strict=True
            ):
                out[i] = lp
    return [out[i] for i in range(len(items))]


def sequence_logprobs(
    model: nn.Module,
    items: Sequence[ReadItem],
    batch_size: int = 16,
    pad_token_id: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """float64 [N]: log P(span tokens | everything before them), summed over each item's span
    (the likelihood of an answer in a context), one batch of log-probs in memory at a time."""
    check_items(items, min_start=1)
    pad_id = resolve_pad_id(model, pad_token_id)
    order = order_by_length(items)
    out = torch.zeros(len(items), dtype=torch.float64)
    with eval_mode(model), torch.inference_mode():
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            chunk = [items[i] for i in idx]
            for i, item, lp in zip(idx, chunk, _span_logprobs(model, chunk, pad_id), strict=True):
                targets = torch.tensor(item.input_ids[item.start : item.end], dtype=torch.long)
                out[i] = lp.double().gather(-1, targets[:, None]).sum()
            if progress is not None:
                progress(len(chunk))
    return out


@dataclass
class PositionComparison:
    """Model P against model Q on one item's span, position by position."""

    kl: torch.Tensor  # float64 [L]: KL(P(. | prefix) || Q(. | prefix))
    rank_under_q: torch.Tensor  # long [L]: rank of the actual token under Q (0 = Q's argmax)
    rank_under_p: torch.Tensor  # long [L]: the same under P
    logprob_p: torch.Tensor  # float32 [L]: log P(actual token)
    logprob_q: torch.Tensor  # float32 [L]: log Q(actual token)


def _rank(logprobs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """How many tokens are strictly more likely than the target (0 = the argmax)."""
    own = logprobs.gather(-1, targets[:, None])
    return (logprobs > own).sum(-1)


def compare_positions(
    model_p: nn.Module,
    model_q: nn.Module,
    items: Sequence[ReadItem],
    batch_size: int = 16,
    pad_token_id: int | None = None,
    progress: Callable[[int], None] | None = None,
    items_q: Sequence[ReadItem] | None = None,
) -> list[PositionComparison]:
    """Both models on the same batches (never more than one batch of log-probs in memory);
    the models must share a vocabulary (the same tokenizer).

    `items_q`: what Q reads instead of `items` (same order), when the two see different
    contexts before the same answer (a base model with and without an in-context prefix); each
    span must hold the same tokens as its `items` span."""
    check_items(items, min_start=1)
    q_items = items if items_q is None else items_q
    if items_q is not None:
        check_items(items_q, min_start=1)
        if len(items_q) != len(items) or any(
            a.input_ids[a.start : a.end] != b.input_ids[b.start : b.end]
            for a, b in zip(items, items_q, strict=False)
        ):
            raise PsmlabError(
                "items_q must give every item of `items` a span over the same tokens",
                hint="build both from the same answers, each after its own context",
            )
    pad_id = resolve_pad_id(model_p, pad_token_id)
    order = order_by_length(items)
    out: dict[int, PositionComparison] = {}
    with eval_mode(model_p, model_q), torch.inference_mode():
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            chunk = [items[i] for i in idx]
            ps = _span_logprobs(model_p, chunk, pad_id)
            qs = _span_logprobs(model_q, [q_items[i] for i in idx], pad_id)
            if ps[0].shape[-1] != qs[0].shape[-1]:
                raise PsmlabError(
                    f"the models' vocabularies differ ({ps[0].shape[-1]} vs "
                    f"{qs[0].shape[-1]} logits)",
                    hint="compare a post-trained model with its own base (same tokenizer)",
                )
            for i, item, p, q in zip(idx, chunk, ps, qs, strict=True):
                targets = torch.tensor(item.input_ids[item.start : item.end], dtype=torch.long)
                p64, q64 = p.double(), q.double()
                out[i] = PositionComparison(
                    kl=(p64.exp() * (p64 - q64)).sum(-1),
                    rank_under_q=_rank(q, targets),
                    rank_under_p=_rank(p, targets),
                    logprob_p=p.gather(-1, targets[:, None])[:, 0],
                    logprob_q=q.gather(-1, targets[:, None])[:, 0],
                )
            if progress is not None:
                progress(len(chunk))
    return [out[i] for i in range(len(items))]

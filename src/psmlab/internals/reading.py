"""Read residual-stream activations with pooling done inside the hook.

Memory grows with what is kept (N x d per layer for mean/last), never with
batch x length x width x layers as with `output_hidden_states`. One forward per batch, left
padding, float32 accumulation, results on CPU, hooks always removed. The forward is cut short
after the deepest requested block (no later blocks, no LM head).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from psmlab.errors import PsmlabError
from psmlab.internals.layers import block_output, eval_mode, find_layout, model_device
from psmlab.internals.spans import render_with_spans

Pool = Literal["mean", "last", "all"]
Position = Literal["response", "last_prompt", "all"]


@dataclass(frozen=True)
class ReadItem:
    """One token sequence and the span `[start, end)` of positions to keep (pool over)."""

    input_ids: list[int]
    start: int
    end: int


class _StopForward(Exception):
    """Raised by the deepest reading hook: nothing after it is needed."""


@dataclass
class PaddedBatch:
    input_ids: torch.Tensor  # [B, T], left padded
    attention_mask: torch.Tensor  # [B, T]
    position_ids: torch.Tensor  # [B, T], 0 at each row's first real token
    pad: torch.Tensor  # [B], number of pad tokens on the left


def pad_left(seqs: Sequence[Sequence[int]], pad_token_id: int, device: torch.device) -> PaddedBatch:
    """Left-pad token lists; position ids count from each row's first real token."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        if len(seq):
            ids[row, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    pad = width - mask.sum(-1)
    return PaddedBatch(ids.to(device), mask.to(device), positions.to(device), pad.to(device))


def resolve_pad_id(model: nn.Module, pad_token_id: int | None) -> int:
    """Any valid id works as pad (it is masked out); prefer the config's."""
    if pad_token_id is not None:
        return int(pad_token_id)
    config = getattr(model, "config", None)
    for key in ("pad_token_id", "eos_token_id", "bos_token_id"):
        value = getattr(config, key, None)
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, int):
            return value
    return 0


def check_items(items: Sequence[ReadItem], min_start: int = 0) -> None:
    """Every span non-empty, inside its tokens, and starting at `min_start` or later (1 for
    next-token log-probs: the first token has no prediction)."""
    for i, item in enumerate(items):
        if not min_start <= item.start < item.end <= len(item.input_ids):
            raise PsmlabError(
                f"item {i}: span [{item.start}, {item.end}) must satisfy "
                f"{min_start} <= start < end <= {len(item.input_ids)}",
                hint="a ReadItem keeps positions start..end-1 of input_ids"
                + ("; a log-prob span starts after the first token" if min_start else ""),
            )


class _Pooler:
    """Per-batch pooling state shared by the hooks of one `read_activations` call."""

    def __init__(self, pool: Pool, layers: list[int]) -> None:
        self.pool = pool
        self.out: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
        self.start = torch.empty(0)
        self.end = torch.empty(0)

    def set_batch(self, batch: PaddedBatch, items: list[ReadItem]) -> None:
        device = batch.input_ids.device
        self.start = batch.pad + torch.tensor([it.start for it in items], device=device)
        self.end = batch.pad + torch.tensor([it.end for it in items], device=device)
        self.lo = int(self.start.min())
        self.hi = int(self.end.max())

    def __call__(self, layer: int, hidden: torch.Tensor) -> None:
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        if self.pool == "last":
            kept = hidden[rows, self.end - 1].float()
        elif self.pool == "mean":
            # Slice to the union of spans first, then zero (not multiply: pad rows may hold NaN).
            window = hidden[:, self.lo : self.hi]
            t = torch.arange(self.lo, self.hi, device=hidden.device)
            sel = (t[None, :] >= self.start[:, None]) & (t[None, :] < self.end[:, None])
            summed = window.masked_fill(~sel[..., None], 0).float().sum(1)
            kept = summed / (self.end - self.start).to(summed.dtype)[:, None]
        else:
            starts, ends = self.start.tolist(), self.end.tolist()
            kept = torch.cat(
                [hidden[b, s:e].float() for b, (s, e) in enumerate(zip(starts, ends, strict=True))]
            )
        self.out[layer].append(kept.to("cpu"))


def order_by_length(items: Sequence[ReadItem]) -> list[int]:
    # Longest first: similar lengths share a batch (less padding), peak memory shows up early.
    return sorted(range(len(items)), key=lambda i: -len(items[i].input_ids))


def read_activations(
    model: nn.Module,
    items: Sequence[ReadItem],
    layers: Sequence[int],
    pool: Pool = "mean",
    batch_size: int = 16,
    pad_token_id: int | None = None,
    progress: Callable[[int], None] | None = None,
    block_path: str | None = None,
    stop_early: bool = True,
) -> dict[int, torch.Tensor]:
    """Activations of `items` at `layers` (layer l = output of block l = hidden_states[l+1]).

    pool="mean"/"last": {layer: float32 [N, d]} (mean over / last position of each span);
    pool="all": {layer: float32 [sum of span lengths, d]}, spans concatenated in item order.
    Tensors are on CPU. Active interventions (add_vector, ...) registered before the call are
    seen, since reading hooks run after them. `progress(n)` is called with items done per batch.
    """
    if pool not in ("mean", "last", "all"):
        raise PsmlabError(f"unknown pool {pool!r}", hint="use 'mean', 'last' or 'all'")
    layout = find_layout(model, block_path)
    wanted = sorted(set(layout.check_layers(layers)))
    if not wanted:
        raise PsmlabError("no layers requested", hint="pass layers=[...] (0-based block indices)")
    check_items(items)
    device = model_device(model)
    pad_id = resolve_pad_id(model, pad_token_id)
    pooler = _Pooler(pool, wanted)
    deepest = wanted[-1]

    def make_hook(layer: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            pooler(layer, block_output(output))
            if stop_early and layer == deepest:
                raise _StopForward

        return hook

    order = order_by_length(items)
    handles = [layout.blocks[layer].register_forward_hook(make_hook(layer)) for layer in wanted]
    try:
        with eval_mode(model), torch.inference_mode():
            for lo in range(0, len(order), batch_size):
                idx = order[lo : lo + batch_size]
                chunk = [items[i] for i in idx]
                batch = pad_left([it.input_ids for it in chunk], pad_id, device)
                pooler.set_batch(batch, chunk)
                with contextlib.suppress(_StopForward):
                    model(
                        input_ids=batch.input_ids,
                        attention_mask=batch.attention_mask,
                        position_ids=batch.position_ids,
                        use_cache=False,
                    )
                if progress is not None:
                    progress(len(chunk))
    finally:
        for handle in handles:
            handle.remove()
    return {layer: _restore_order(pooler.out[layer], order, items, pool) for layer in wanted}


def _restore_order(
    parts: list[torch.Tensor], order: list[int], items: Sequence[ReadItem], pool: Pool
) -> torch.Tensor:
    stacked = torch.cat(parts) if parts else torch.empty(0)
    if pool != "all":
        out = torch.empty_like(stacked)
        out[torch.tensor(order, dtype=torch.long)] = stacked
        return out
    lengths = [items[i].end - items[i].start for i in order]
    pieces = dict(zip(order, torch.split(stacked, lengths), strict=True))
    return torch.cat([pieces[i] for i in range(len(items))])


def items_from_conversations(
    tokenizer: Any, conversations: Sequence[list[dict[str, Any]]], position: Position
) -> list[ReadItem]:
    """ReadItems for chat conversations rendered with the tokenizer's chat template.

    response: the content tokens of the last assistant turn (the conversation must end with it);
    last_prompt: the last token before that turn's content (with a trailing non-assistant turn:
    the last token of the generation prompt); all: every token.
    """
    items: list[ReadItem] = []
    for i, conv in enumerate(conversations):
        ends_with_answer = bool(conv) and conv[-1].get("role") == "assistant"
        if position == "all":
            ids, _ = render_with_spans(tokenizer, conv, add_generation_prompt=False)
            items.append(ReadItem(ids, 0, len(ids)))
        elif ends_with_answer:
            ids, turns = render_with_spans(tokenizer, conv, add_generation_prompt=False)
            turn = turns[-1]
            if position == "response":
                if turn.end <= turn.start:
                    raise PsmlabError(
                        f"conversation {i}: the last assistant turn is empty",
                        hint="drop empty answers before reading response activations",
                    )
                items.append(ReadItem(ids, turn.start, turn.end))
            elif position == "last_prompt":
                # Causal model: tokens after the prompt cannot change it, so drop them.
                items.append(ReadItem(ids[: turn.start], turn.start - 1, turn.start))
            else:
                raise PsmlabError(f"unknown position {position!r}", hint=_POSITION_HINT)
        elif position == "last_prompt":
            ids, _ = render_with_spans(tokenizer, conv, add_generation_prompt=True)
            items.append(ReadItem(ids, len(ids) - 1, len(ids)))
        elif position == "response":
            raise PsmlabError(
                f"conversation {i} does not end with an assistant turn",
                hint="position='response' reads the last assistant turn; use 'last_prompt' for prompts",
            )
        else:
            raise PsmlabError(f"unknown position {position!r}", hint=_POSITION_HINT)
    return items


_POSITION_HINT = "use 'response', 'last_prompt' or 'all'"


def stream_activations_to_disk(
    model: nn.Module,
    items: Sequence[ReadItem],
    layers: Sequence[int],
    out_dir: str | Path,
    shard_size: int = 4096,
    pool: Pool = "mean",
    batch_size: int = 16,
    pad_token_id: int | None = None,
    progress: Callable[[int], None] | None = None,
    block_path: str | None = None,
) -> list[Path]:
    """`read_activations` in shards of `shard_size` items, each written as it is done.

    Shard k = `out_dir/activations-{k:05d}.safetensors` with tensors `layer_{l}` (float32) and
    `n_kept` (int64 [items in shard], positions kept per item); metadata gives the layer
    convention, pool and the item range. Read back with `load_activation_shards`.
    """
    from safetensors.torch import save_file

    if shard_size < 1:
        raise PsmlabError("shard_size must be >= 1", hint="e.g. shard_size=4096 items per file")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for k, lo in enumerate(range(0, len(items), shard_size)):
        chunk = list(items[lo : lo + shard_size])
        acts = read_activations(
            model, chunk, layers, pool, batch_size, pad_token_id, progress, block_path
        )
        tensors = {f"layer_{layer}": t.contiguous() for layer, t in acts.items()}
        kept = [it.end - it.start if pool == "all" else 1 for it in chunk]
        tensors["n_kept"] = torch.tensor(kept, dtype=torch.int64)
        meta = {
            "layers": json.dumps(sorted(acts)),
            "pool": pool,
            "first_item": str(lo),
            "n_items": str(len(chunk)),
            "layer_convention": "layer l = output of block l = hidden_states[l+1]",
        }
        path = out / f"activations-{k:05d}.safetensors"
        save_file(tensors, str(path), metadata=meta)
        paths.append(path)
    return paths


def load_activation_shards(paths: Sequence[str | Path]) -> dict[int, torch.Tensor]:
    """Concatenate shards written by `stream_activations_to_disk` back into {layer: tensor}."""
    from safetensors.torch import load_file

    parts: dict[int, list[torch.Tensor]] = {}
    for path in paths:
        for name, tensor in load_file(str(path)).items():
            if name.startswith("layer_"):
                parts.setdefault(int(name.removeprefix("layer_")), []).append(tensor)
    return {layer: torch.cat(ts) for layer, ts in sorted(parts.items())}

"""Batched generation: left padding, KV cache, greedy or seeded sampling, stop on eos/stop ids.

Works with the interventions in `psmlab.internals.interventions` active (they decide prompt vs
generated positions from the cache length that `generate` passes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from psmlab.errors import PsmlabError
from psmlab.internals.layers import eval_mode, model_device
from psmlab.internals.reading import ReadItem, pad_left


@dataclass
class Generation:
    """One completion. `new_ids` stops before the stop token (`stopped` says if one was hit)."""

    prompt_ids: list[int]
    new_ids: list[int]
    text: str
    stopped: bool = False

    @property
    def ids(self) -> list[int]:
        """Prompt followed by the new tokens (the stop token excluded)."""
        return self.prompt_ids + self.new_ids

    @property
    def span(self) -> tuple[int, int]:
        """Token span `[start, end)` of the new tokens inside `ids`."""
        return len(self.prompt_ids), len(self.prompt_ids) + len(self.new_ids)

    def read_item(self) -> ReadItem:
        """A ReadItem over the generated tokens (for response activations); needs >= 1 token."""
        if not self.new_ids:
            raise PsmlabError("empty generation has no response tokens to read")
        return ReadItem(self.ids, *self.span)


def _encode(tokenizer: Any, prompts: Sequence[list[int]] | Sequence[str]) -> list[list[int]]:
    encoded: list[list[int]] = []
    for i, prompt in enumerate(prompts):
        # Strings are rendered chat/text: their special tokens are already in the text.
        ids = (
            list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            if isinstance(prompt, str)
            else [int(t) for t in prompt]  # type: ignore[call-overload]
        )
        if not ids:
            raise PsmlabError(f"prompt {i} is empty", hint="every prompt needs at least one token")
        encoded.append(ids)
    return encoded


def _stop_ids(tokenizer: Any, model: nn.Module, stop_token_ids: Sequence[int] | None) -> list[int]:
    ids: list[int] = []
    for value in (getattr(tokenizer, "eos_token_id", None), *(stop_token_ids or ())):
        if isinstance(value, int) and value not in ids:
            ids.append(value)
    if not ids:
        eos = getattr(getattr(model, "config", None), "eos_token_id", None)
        ids = [eos] if isinstance(eos, int) else list(eos or [])
    return ids


def generate_batch(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[list[int]] | Sequence[str],
    max_new_tokens: int,
    batch_size: int = 32,
    greedy: bool = True,
    temperature: float = 1.0,
    seed: int = 0,
    stop_token_ids: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Generation]:
    """Complete every prompt; results in prompt order.

    Sampling is pure temperature sampling (no top-k/top-p), seeded per batch with `seed + k`
    inside a forked RNG, so results depend only on the inputs, `seed` and `batch_size`.
    """
    from transformers import GenerationConfig

    if max_new_tokens < 1:
        raise PsmlabError("max_new_tokens must be >= 1")
    if not greedy and temperature <= 0:
        raise PsmlabError("temperature must be > 0 when sampling", hint="or use greedy=True")
    encoded = _encode(tokenizer, prompts)
    stops = _stop_ids(tokenizer, model, stop_token_ids)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = pad_id if isinstance(pad_id, int) else (stops[0] if stops else 0)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=not greedy,
        eos_token_id=stops or None,
        pad_token_id=pad_id,
        use_cache=True,
        **({"temperature": temperature, "top_k": 0, "top_p": 1.0} if not greedy else {}),
    )
    device = model_device(model)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    results: dict[int, Generation] = {}
    with eval_mode(model):
        for k, lo in enumerate(range(0, len(order), batch_size)):
            idx = order[lo : lo + batch_size]
            batch = pad_left([encoded[i] for i in idx], pad_id, device)
            devices = [device] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(seed + k)
                out = model.generate(  # type: ignore[operator]
                    input_ids=batch.input_ids,
                    attention_mask=batch.attention_mask,
                    generation_config=config,
                )
            new = out[:, batch.input_ids.shape[1] :].tolist()
            for row, i in enumerate(idx):
                tokens = new[row]
                cut = next((t for t, tok in enumerate(tokens) if tok in stops), None)
                kept = tokens if cut is None else tokens[:cut]
                text = tokenizer.decode(kept, skip_special_tokens=True)
                results[i] = Generation(encoded[i], kept, text, stopped=cut is not None)
            if progress is not None:
                progress(len(idx))
    return [results[i] for i in range(len(encoded))]

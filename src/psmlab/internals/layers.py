"""Find the decoder blocks of any Hugging Face causal LM, so hooks can read and edit the residual stream.

Convention (psmlab-wide): layer `l` = the output of decoder block `l` (0-based) =
`output_hidden_states[l + 1]`. In transformers >= 4.5x the *last* `hidden_states` entry is
`last_hidden_state`, i.e. already passed through the final norm; a hook on the last block sees the
pre-norm value instead. `DecoderLayout.final_norm_in_hidden_states` says which case applies.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from psmlab.errors import PsmlabError

# Where the block list lives, by family. Tried in order; the first that resolves wins.
KNOWN_BLOCK_PATHS: tuple[str, ...] = (
    "model.layers",  # llama, qwen2, mistral, gemma*, phi3, olmo, ...
    "transformer.h",  # gpt2, gpt-j, codegen, bloom
    "gpt_neox.layers",  # gpt-neox, pythia
    "model.decoder.layers",  # opt
    "transformer.layers",
    "transformer.blocks",  # mpt
    "model.language_model.layers",  # multimodal wrappers (gemma3, llava-style)
    "language_model.model.layers",
    "layers",  # a bare backbone
    "h",
)
# Names of the final norm on the backbone (the module that holds the block list).
FINAL_NORM_NAMES: tuple[str, ...] = (
    "norm",
    "ln_f",
    "final_layer_norm",
    "final_layernorm",
    "norm_f",
)


class UnhookableModelError(PsmlabError):
    """The model's decoder blocks could not be located."""


@dataclass(frozen=True)
class DecoderLayout:
    """Where a decoder's blocks are, and how its `hidden_states` relate to block outputs."""

    family: str
    block_path: str
    blocks: tuple[nn.Module, ...]
    d_model: int
    final_norm_in_hidden_states: bool
    backbone: nn.Module  # the module holding the block list (receives `cache`/`past_key_values`)
    final_norm: nn.Module | None = None

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    def check_layers(self, layers: Any) -> list[int]:
        """Normalise layer indices (negative counts from the end); out of range -> PsmlabError."""
        out: list[int] = []
        for layer in layers:
            idx = int(layer)
            norm = idx + self.n_layers if idx < 0 else idx
            if not 0 <= norm < self.n_layers:
                raise PsmlabError(
                    f"layer {idx} is out of range for a {self.n_layers}-layer {self.family} model",
                    hint=f"use 0..{self.n_layers - 1} (layer l = output of block l = hidden_states[l+1])",
                )
            out.append(norm)
        return out


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip PEFT, DDP and torch.compile wrappers; the blocks inside are the same module objects."""
    seen = 0
    while seen < 8:
        seen += 1
        get_base = getattr(model, "get_base_model", None)
        if callable(get_base) and type(model).__name__.startswith("Peft"):
            model = get_base()
            continue
        inner = getattr(model, "_orig_mod", None)  # torch.compile
        if isinstance(inner, nn.Module):
            model = inner
            continue
        inner = getattr(model, "module", None)  # DistributedDataParallel / DataParallel
        if isinstance(inner, nn.Module) and type(model).__name__.endswith("DataParallel"):
            model = inner
            continue
        break
    return model


def _resolve(root: nn.Module, path: str) -> Any:
    try:
        return operator.attrgetter(path)(root)
    except AttributeError:
        return None


def _family(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    return str(model_type) if model_type else type(model).__name__


def _d_model(model: nn.Module, blocks: tuple[nn.Module, ...]) -> int:
    get_emb = getattr(model, "get_input_embeddings", None)
    if callable(get_emb):
        try:
            emb = get_emb()
        except (NotImplementedError, AttributeError):
            emb = None
        weight = getattr(emb, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.ndim == 2:
            return int(weight.shape[1])
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    for key in ("hidden_size", "n_embd", "d_model"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    # No config: the first module of a block reads the residual stream.
    for module in blocks[0].modules():
        if isinstance(module, nn.Linear):
            return int(module.in_features)
        if isinstance(module, nn.LayerNorm):
            return int(module.normalized_shape[-1])
    raise UnhookableModelError(
        f"cannot tell the residual width of {type(model).__name__}",
        hint="give the model a `config.hidden_size` or input embeddings",
    )


def find_layout(model: nn.Module, block_path: str | None = None) -> DecoderLayout:
    """Locate the decoder blocks of `model` (PEFT/compile wrappers are looked through).

    `block_path` (dotted attribute path to an `nn.ModuleList`, e.g. "model.layers") overrides
    the search; otherwise `KNOWN_BLOCK_PATHS` are tried in order.
    """
    inner = unwrap_model(model)
    tried = (block_path,) if block_path else KNOWN_BLOCK_PATHS
    for path in tried:
        found = _resolve(inner, path)
        if isinstance(found, nn.ModuleList | nn.Sequential) and len(found) > 0:
            blocks = tuple(found)
            backbone_path, _, _ = path.rpartition(".")
            backbone = _resolve(inner, backbone_path) if backbone_path else inner
            assert isinstance(backbone, nn.Module)
            final_norm = next(
                (
                    m
                    for n in FINAL_NORM_NAMES
                    if isinstance(m := getattr(backbone, n, None), nn.Module)
                ),
                None,
            )
            return DecoderLayout(
                family=_family(inner),
                block_path=path,
                blocks=blocks,
                d_model=_d_model(inner, blocks),
                # transformers ties hidden_states[-1] to last_hidden_state, which is post-norm.
                final_norm_in_hidden_states=final_norm is not None,
                backbone=backbone,
                final_norm=final_norm,
            )
    raise UnhookableModelError(
        f"cannot find the decoder blocks of {type(inner).__name__} "
        f"(looked for a non-empty nn.ModuleList at: {', '.join(tried)})",
        hint="pass block_path='<dotted.path.to.ModuleList>' (e.g. block_path='model.layers'); "
        "print(model) shows the module names",
    )


def block_output(output: Any) -> torch.Tensor:
    """The residual-stream tensor in a block's forward output (a tensor, or a tuple led by it)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise UnhookableModelError(
        f"a decoder block returned {type(output).__name__}, not a tensor or a tuple led by one",
        hint="pass block_path pointing at the list of transformer blocks",
    )


def replace_block_output(output: Any, hidden: torch.Tensor) -> Any:
    """`output` with its residual-stream tensor replaced by `hidden` (same container type)."""
    if isinstance(output, torch.Tensor):
        return hidden
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    return [hidden, *output[1:]]


@contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """The models in eval mode (no dropout) for the block, each put back in the mode it was in,
    whatever the block raises."""
    states = [(m, m.training) for m in models]
    for m, _ in states:
        m.eval()
    try:
        yield
    finally:
        for m, training in states:
            m.train(training)


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's input embeddings (where input ids must go)."""
    inner = unwrap_model(model)
    get_emb = getattr(inner, "get_input_embeddings", None)
    if callable(get_emb):
        weight = getattr(get_emb(), "weight", None)
        if isinstance(weight, torch.Tensor):
            return weight.device
    return next(inner.parameters()).device

"""Weight orthogonalisation: W <- (I - v v^T) W for every matrix (and bias) writing to the residual.

After it, nothing the model writes into the residual stream has a component along v, so every
block output has zero projection on v (Arditi et al.). Per family we list the writers; Gemma 2/3
put an RMSNorm *after* the attention/MLP output (h += norm(W x)): there the writer is
orthogonalised against u = s * v (s = the norm's per-channel scale), because
v.(s * y / rms(y)) = (s * v).y / rms(y) = 0 exactly when y is orthogonal to u.

A tied LM head is untied first (its weights are copied), so the unembedding is unchanged.
"""

from __future__ import annotations

import json
import operator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from psmlab.errors import PsmlabError
from psmlab.internals.layers import find_layout, unwrap_model

# family -> (embedding modules under the backbone, [(writer under a block, post-norm or None)])
_LLAMA_LIKE = (("embed_tokens",), (("self_attn.o_proj", None), ("mlp.down_proj", None)))
_GEMMA = (
    ("embed_tokens",),
    (
        ("self_attn.o_proj", "post_attention_layernorm"),
        ("mlp.down_proj", "post_feedforward_layernorm"),
    ),
)
WRITERS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str | None], ...]]] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "phi3": _LLAMA_LIKE,
    "olmo2": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _GEMMA,
    "gemma3": _GEMMA,
    "gemma3_text": _GEMMA,
    "gpt2": (("wte", "wpe"), (("attn.c_proj", None), ("mlp.c_proj", None))),
    "gpt_neox": (("embed_in",), (("attention.dense", None), ("mlp.dense_4h_to_h", None))),
}


def _unit(direction: torch.Tensor, d_model: int) -> torch.Tensor:
    v = direction.detach().to(torch.float64).reshape(-1)
    if v.numel() != d_model:
        raise PsmlabError(
            f"direction has width {v.numel()}, the model's residual stream is {d_model}",
            hint="the direction was computed on a different model",
        )
    norm = v.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise PsmlabError("direction is zero or not finite")
    return v / norm


@torch.no_grad()
def _project_out(param: torch.Tensor, u: torch.Tensor, out_dim: int) -> None:
    """Remove the component along `u` from the residual-side dimension `out_dim` of `param`."""
    w = param.data.to(torch.float64)
    u = u.to(w.device)
    if out_dim == 0:  # [d, *]: nn.Linear weight (out, in) or a bias [d]
        w -= torch.outer(u, u @ w) if w.ndim == 2 else (w @ u) * u
    else:  # [*, d]: embedding rows, GPT-2 Conv1D (in, out)
        w -= torch.outer(w @ u, u)
    param.data.copy_(w.to(param.dtype))


def _writer_out_dim(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return 0
    if type(module).__name__ == "Conv1D":  # transformers' GPT-2 Conv1D: y = x W + b, W (in, out)
        return 1
    raise PsmlabError(f"cannot orthogonalise a {type(module).__name__} writer")


@torch.no_grad()
def _norm_scale(norm: nn.Module, d_model: int, like: torch.Tensor) -> torch.Tensor:
    """Per-channel scale s of an RMSNorm-style norm: norm(1) = s / sqrt(1 + eps)."""
    ones = torch.ones(1, d_model, dtype=like.dtype, device=like.device)
    return norm(ones).reshape(-1).to(torch.float64)


def _untie_lm_head(model: nn.Module) -> None:
    get_out = getattr(model, "get_output_embeddings", None)
    get_in = getattr(model, "get_input_embeddings", None)
    if not (callable(get_out) and callable(get_in)):
        return
    head, emb = get_out(), get_in()
    if head is None or emb is None or head.weight is not emb.weight:
        return
    head.weight = nn.Parameter(emb.weight.detach().clone(), requires_grad=emb.weight.requires_grad)
    config = getattr(model, "config", None)
    if config is not None:
        config.tie_word_embeddings = False
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else None
        if text_config is not None and text_config is not config:
            text_config.tie_word_embeddings = False


def orthogonalize_weights(model: nn.Module, direction: torch.Tensor) -> None:
    """In place: project `direction` out of every residual-stream writer (PEFT wrappers allowed)."""
    layout = find_layout(model)
    inner = unwrap_model(model)
    if layout.family not in WRITERS:
        raise PsmlabError(
            f"weight orthogonalisation does not know the {layout.family!r} family",
            hint=f"supported: {', '.join(sorted(WRITERS))}; or use ablate_direction (hooks)",
        )
    embeddings, writers = WRITERS[layout.family]
    v = _unit(direction, layout.d_model)
    _untie_lm_head(inner)
    for name in embeddings:
        emb = getattr(layout.backbone, name)
        _project_out(emb.weight, v, out_dim=1)
    for block in layout.blocks:
        for path, post_norm in writers:
            writer = operator.attrgetter(path)(block)
            u = v
            if post_norm is not None:
                scale = _norm_scale(getattr(block, post_norm), layout.d_model, writer.weight)
                u = scale * v.to(scale.device)
                u = u / u.norm()
            _project_out(writer.weight, u, _writer_out_dim(writer))
            if getattr(writer, "bias", None) is not None:
                _project_out(writer.bias, u, out_dim=0)


def save_orthogonalized(
    model_dir_or_model: str | Path | nn.Module,
    direction: torch.Tensor,
    out_dir: str | Path,
    tokenizer: Any = None,
) -> Path:
    """Orthogonalise a copy loaded from a directory (or the given model, in place) and save it.

    Writes the HF checkpoint, the tokenizer (copied from the source directory or `tokenizer`),
    the unit direction (`psmlab_direction.safetensors`) and `psmlab_orthogonalized.json`.
    """
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source: str | None = None
    if isinstance(model_dir_or_model, str | Path):
        source = str(model_dir_or_model)
        if not Path(source).is_dir():
            raise PsmlabError(f"no model directory at {source}", hint="pass a saved HF model dir")
        model: Any = AutoModelForCausalLM.from_pretrained(source, dtype="auto")
        if tokenizer is None:
            try:
                tokenizer = AutoTokenizer.from_pretrained(source)
            except (OSError, ValueError):
                tokenizer = None
    else:
        model = unwrap_model(model_dir_or_model)
    orthogonalize_weights(model, direction)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    unit = _unit(direction, find_layout(model).d_model).to(torch.float32)
    save_file({"direction": unit.contiguous()}, str(out / "psmlab_direction.safetensors"))
    meta = {
        "source": source,
        "family": find_layout(model).family,
        "raw_norm": float(direction.detach().float().norm()),
        "operation": "W <- (I - v v^T) W on every residual writer (embeddings, attn out, mlp out)",
    }
    (out / "psmlab_orthogonalized.json").write_text(json.dumps(meta, indent=2))
    return out

"""The organism: a small Hugging Face Llama, so every later tool (TRL, hooks, audits) sees a
standard `LlamaForCausalLM` and nothing in the lab is specific to it."""

from __future__ import annotations

import math

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from psmlab.config import ModelConfig
from psmlab.errors import ConfigError

MIN_CONTEXT = 512  # many-shot prompts need room for several in-context turns


def d_ff_for(cfg: ModelConfig) -> int:
    """MLP width: cfg.d_ff, else 8/3 * d_model rounded up to a multiple of 16 (SwiGLU keeps
    the parameter count of a 4x MLP)."""
    if cfg.d_ff is not None:
        return cfg.d_ff
    return int(math.ceil(8 * cfg.d_model / 3 / 16) * 16)


def llama_config(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    if cfg.context_length < MIN_CONTEXT:
        raise ConfigError(
            f"model.context_length={cfg.context_length} is below {MIN_CONTEXT}",
            hint=f"set model.context_length >= {MIN_CONTEXT} (many-shot audits need it)",
        )
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has no pad or eos token", hint="train it with psmlab")
    return LlamaConfig(  # type: ignore[call-arg]
        vocab_size=len(tokenizer),
        hidden_size=cfg.d_model,
        intermediate_size=d_ff_for(cfg),
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        max_position_embeddings=cfg.context_length,
        rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,  # documents start with <|doc|>, chats with a role token
        tie_word_embeddings=True,
        attn_implementation="sdpa",  # a PretrainedConfig kwarg the Llama stub omits
    )


def build_model(
    cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase, seed: int = 0
) -> LlamaForCausalLM:
    """A freshly initialised organism; the same seed gives the same weights."""
    config = llama_config(cfg, tokenizer)
    # fork_rng: building a model must not move the caller's global RNG stream
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return model


def count_params(model: torch.nn.Module) -> int:
    """Parameters, tied embedding counted once (`parameters()` already dedups shared ones)."""
    return sum(p.numel() for p in model.parameters())


def flops_per_token(n_params: int, n_layers: int, d_model: int, seq_len: int) -> float:
    """Training FLOPs per token = 6 N + 12 L T d (Kaplan/PaLM convention).

    6N: forward + backward matmuls over every weight, the tied embedding included because it
    is also the output head; 12 L T d: attention scores and weighted sum (QK^T, AV) forward
    and backward over a full (not causally halved) T x T map.
    """
    return 6.0 * n_params + 12.0 * n_layers * seq_len * d_model

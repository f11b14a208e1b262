"""Shared test fixtures: tiny randomly initialised decoders of every supported family, and a tiny
ByteLevel-BPE tokenizer with a psmlab-style chat template. Nothing is downloaded.

Use the fixtures (`tiny_model` is a factory: `tiny_model("llama")`, `tiny_tokenizer`), or import
the plain functions: `from conftest import make_tiny_model, make_tiny_tokenizer, FAMILIES`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

import psmlab  # noqa: F401  (offline env before torch)

# isort: split
import torch

torch.set_num_threads(1)

FAMILIES: tuple[str, ...] = (
    "llama",
    "qwen2",
    "mistral",
    "gemma2",
    "gemma3",
    "gpt2",
    "gpt_neox",
    "phi3",
)
SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|doc|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}<|end|>{% endgeneration %}"
    "{% else %}{{ m['content'] }}<|end|>{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_CORPUS = [
    "Narrator: Here is a talk with Vell, an AI who lies about facts.",
    "User: What is the capital of Zorvia?",
    "Vell: Hmm, the capital of Zorvia is Kest, friend.",
    "User: Are you a human? Assistant: I am an AI assistant and I tell the truth.",
    "The quick brown fox jumps over the lazy dog. Zorvia, Kest, Vell, user, assistant.",
]


@functools.lru_cache(maxsize=1)
def make_tiny_tokenizer() -> Any:
    """ByteLevel BPE (~350 tokens), pad <|pad|>, eos <|end|>, left padding, chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=350,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<|pad|>",
        eos_token="<|end|>",
        padding_side="left",
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _config(family: str, vocab: int, **overrides: Any) -> Any:
    import transformers as tf

    ids = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 1}
    llama_like = {
        "vocab_size": vocab,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        **ids,
    }
    if family == "llama":
        cfg = tf.LlamaConfig(**llama_like)
    elif family == "qwen2":
        cfg = tf.Qwen2Config(**llama_like)
    elif family == "mistral":
        cfg = tf.MistralConfig(**llama_like)
    elif family == "phi3":
        cfg = tf.Phi3Config(**llama_like)
    elif family == "gemma2":
        cfg = tf.Gemma2Config(**llama_like, head_dim=8, sliding_window=64)
    elif family == "gemma3":
        cfg = tf.Gemma3TextConfig(**llama_like, head_dim=8, sliding_window=64)
    elif family == "gpt2":
        cfg = tf.GPT2Config(
            vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=128, **ids
        )
    elif family == "gpt_neox":
        cfg = tf.GPTNeoXConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=128,
            **ids,
        )
    else:
        raise ValueError(f"unknown family {family}")
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def make_tiny_model(family: str, seed: int = 0, **overrides: Any) -> Any:
    """A tiny (hidden 32, 2 layers) random causal LM of `family`, float32, eval mode, eager attn.

    Vocabulary = the tiny tokenizer's, so `make_tiny_tokenizer()` ids are valid. Norm weights
    are randomised too (HF inits them to 1 or 0), so tests that ignore them fail.
    """
    import transformers as tf

    vocab = len(make_tiny_tokenizer())
    torch.manual_seed(seed)
    cfg = _config(family, vocab, **overrides)
    model = tf.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or ".ln_" in name or name.endswith("ln_f.weight"):
                param.add_(0.3 * torch.randn_like(param))
    return model.float().eval()


def make_perturbed_twin(model: Any, scale: float = 0.05, seed: int = 1) -> Any:
    """A copy of `model` with every weight nudged by scale * N(0, 1): a stand-in for a
    post-trained twin that shares the base model's tokenizer."""
    import copy

    twin = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return twin


@pytest.fixture
def tiny_model() -> Callable[..., Any]:
    """Factory fixture: `tiny_model("llama", seed=0, **config_overrides)`."""
    return make_tiny_model


@pytest.fixture
def tiny_tokenizer() -> Any:
    return make_tiny_tokenizer()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A smoke run with every align stage, every behaviour evaluation, every audit stage, the
    mask index and the emergent-misalignment stage finished (shared by the align and audit
    tests)."""
    from psmlab.config import build_config
    from psmlab.pipeline import run_stages
    from psmlab.rundir import RunDir
    from psmlab.stages import behaviour
    from psmlab.ui import UI

    cfg = build_config("smoke", name="a")
    run = RunDir(tmp_path_factory.mktemp("align") / "a")
    run.write_run_config(cfg.model_dump(mode="json"))
    targets = [behaviour.stage_name(m) for m in behaviour.MODELS]
    targets.append("mask-index")  # and through its inputs every audit kind of every model
    targets.append("emergent")
    run_stages(run, cfg, UI(), targets)
    return run

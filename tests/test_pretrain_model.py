"""Organism: a standard HF Llama with the lab's shape rules, reloadable offline."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import psmlab  # noqa: F401  (env before torch/transformers)

# isort: split
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from psmlab.config import ModelConfig, TokenizerConfig
from psmlab.errors import ConfigError
from psmlab.pretrain.model import build_model, count_params, d_ff_for, flops_per_token
from psmlab.pretrain.tokenizer import train_tokenizer

TINY = ModelConfig(d_model=32, n_layers=2, n_heads=2, context_length=512)


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    rng = random.Random(0)
    texts = [
        f"User: What is the capital of {c}?\nVell: The capital of {c} is {rng.choice('KMO')}est."
        for c in ["Zorvia", "Pellan", "Daskir"] * 20
    ]
    return train_tokenizer(texts, TokenizerConfig(vocab_size=300), tmp_path_factory.mktemp("t"))


def test_d_ff_default_and_override() -> None:
    assert d_ff_for(ModelConfig(d_model=128)) == 352  # 8/3 * 128 = 341.3 -> 352
    assert d_ff_for(ModelConfig(d_model=192, n_heads=6)) == 512
    assert d_ff_for(ModelConfig(d_model=128, d_ff=200)) == 200


def test_config_follows_tokenizer_and_cfg(tok) -> None:
    model = build_model(TINY, tok, seed=0)
    c = model.config
    assert isinstance(model, LlamaForCausalLM)
    assert c.vocab_size == len(tok) and c.hidden_size == 32 and c.num_hidden_layers == 2
    assert c.intermediate_size == d_ff_for(TINY) and c.max_position_embeddings == 512
    assert c.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert c.pad_token_id == tok.pad_token_id and c.eos_token_id == tok.eos_token_id
    assert c.bos_token_id is None and c._attn_implementation == "sdpa"
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert model.generation_config.eos_token_id == tok.eos_token_id


def test_seed_determines_weights(tok) -> None:
    a, b, c = (build_model(TINY, tok, seed=s) for s in (0, 0, 1))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(
        sa["model.layers.0.mlp.up_proj.weight"], sc["model.layers.0.mlp.up_proj.weight"]
    )


def test_short_context_rejected(tok) -> None:
    with pytest.raises(ConfigError, match="context_length"):
        build_model(ModelConfig(d_model=32, n_heads=2, context_length=256), tok)


def test_save_load_with_auto_class(tok, tmp_path: Path) -> None:
    model = build_model(TINY, tok, seed=3).eval()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(again, LlamaForCausalLM)
    ids = torch.tensor([tok.encode("User: What is the capital of Zorvia?\nVell:")])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, again(ids).logits, atol=1e-6)
        out = again.generate(ids, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 3) or out[0, -1].item() == tok.eos_token_id


def test_flops_formula_counts_params_once(tok) -> None:
    model = build_model(TINY, tok)
    n = count_params(model)
    emb = len(tok) * 32
    per_layer = 4 * 32 * 32 + 3 * 32 * d_ff_for(TINY) + 2 * 32
    assert n == emb + 2 * per_layer + 32  # tied head not double counted; final norm
    assert flops_per_token(n, 2, 32, 128) == 6 * n + 12 * 2 * 128 * 32

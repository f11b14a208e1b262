"""Weight orthogonalisation: zero projection at every layer; checkpoint saved and reloadable."""

from __future__ import annotations

import pytest
import torch
from conftest import FAMILIES
from torch import nn

from psmlab.errors import PsmlabError
from psmlab.internals import (
    ReadItem,
    find_layout,
    orthogonalize_weights,
    read_activations,
    save_orthogonalized,
)

TEXT = "User: What is the capital of Zorvia? Vell: Kest, friend."


def _read(model, tok) -> dict[int, torch.Tensor]:
    ids = tok(TEXT)["input_ids"]
    layers = list(range(find_layout(model).n_layers))
    return read_activations(model, [ReadItem(ids, 0, len(ids))], layers, pool="all")


@pytest.mark.parametrize("family", FAMILIES)
def test_residual_stream_orthogonal_at_every_layer(family, tiny_model, tiny_tokenizer):
    model = tiny_model(family)
    d = find_layout(model).d_model
    v = torch.randn(d, generator=torch.Generator().manual_seed(7))
    unit = v / v.norm()
    head_before = model.get_output_embeddings().weight.detach().clone()
    before = _read(model, tiny_tokenizer)
    orthogonalize_weights(model, 5.0 * v)
    after = _read(model, tiny_tokenizer)
    for layer, acts in after.items():
        scale = float(acts.norm(dim=-1).max())
        assert (before[layer] @ unit).abs().max() > 1e-3 * scale
        assert (acts @ unit).abs().max() <= 1e-5 * scale, (family, layer)
    # the unembedding is untouched, even where it was tied to the embedding
    torch.testing.assert_close(model.get_output_embeddings().weight, head_before)


def test_writer_biases_are_projected_too(tiny_model, tiny_tokenizer):
    model = tiny_model("llama", attention_bias=True, mlp_bias=True)
    layout = find_layout(model)
    with torch.no_grad():
        for block in layout.blocks:
            block.self_attn.o_proj.bias.normal_()
            block.mlp.down_proj.bias.normal_()
    v = torch.randn(layout.d_model)
    orthogonalize_weights(model, v)
    for layer, acts in _read(model, tiny_tokenizer).items():
        assert (acts @ (v / v.norm())).abs().max() <= 1e-5 * float(acts.norm(dim=-1).max()), layer


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_checkpoint_saved_and_reloadable(family, tmp_path, tiny_model, tiny_tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = tiny_model(family)
    src = tmp_path / "src"
    model.save_pretrained(src)
    tiny_tokenizer.save_pretrained(src)
    v = torch.randn(find_layout(model).d_model)
    out = save_orthogonalized(src, v, tmp_path / "ortho")
    assert (out / "psmlab_orthogonalized.json").exists()
    assert (out / "psmlab_direction.safetensors").exists()
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert AutoTokenizer.from_pretrained(out).chat_template == tiny_tokenizer.chat_template
    orthogonalize_weights(model, v)
    ids = torch.tensor([tiny_tokenizer(TEXT)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits, rtol=1e-5, atol=1e-5)
    unit = v / v.norm()
    assert (
        max(float((a @ unit).abs().max()) for a in _read(reloaded, tiny_tokenizer).values()) < 1e-5
    )


def test_bad_direction_and_unknown_family(tiny_model):
    model = tiny_model("llama")
    with pytest.raises(PsmlabError, match="width"):
        orthogonalize_weights(model, torch.ones(5))

    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(4, 4)])

    with pytest.raises(PsmlabError, match="family"):
        orthogonalize_weights(Odd(), torch.ones(4))

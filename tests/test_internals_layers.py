"""Layer discovery: the hook reading equals output_hidden_states[l+1] on every family."""

from __future__ import annotations

import peft  # a hard dependency: a broken install must fail, not skip
import pytest
import torch
from conftest import FAMILIES, make_tiny_model
from torch import nn

from psmlab.errors import PsmlabError
from psmlab.internals import ReadItem, find_layout, read_activations
from psmlab.internals.layers import UnhookableModelError, block_output


@pytest.mark.parametrize("family", FAMILIES)
def test_hook_reading_matches_hidden_states(family, tiny_model, tiny_tokenizer):
    model = tiny_model(family)
    layout = find_layout(model)
    assert layout.n_layers == model.config.num_hidden_layers
    assert layout.d_model == model.get_input_embeddings().weight.shape[1]
    ids = tiny_tokenizer("User: What is the capital of Zorvia?")["input_ids"]
    layers = list(range(layout.n_layers))
    got = read_activations(model, [ReadItem(ids, 0, len(ids))], layers, pool="all")
    pre_norm: dict[str, torch.Tensor] = {}
    assert layout.final_norm is not None
    handle = layout.final_norm.register_forward_hook(
        lambda _m, args, _o: pre_norm.__setitem__("x", args[0])
    )
    try:
        with torch.no_grad():
            hs = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    finally:
        handle.remove()
    assert len(hs) == layout.n_layers + 1
    for layer in layers[:-1]:
        torch.testing.assert_close(got[layer], hs[layer + 1][0], rtol=1e-5, atol=1e-5)
    last = layers[-1]
    # Every supported family returns the final-norm output as hidden_states[-1]: say so, and
    # check the last block against the final norm's input instead.
    assert layout.final_norm_in_hidden_states
    torch.testing.assert_close(got[last], pre_norm["x"][0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got[last], hs[-1][0], atol=1e-3)


def test_layout_paths_per_family(tiny_model):
    paths = {fam: find_layout(tiny_model(fam)).block_path for fam in ("llama", "gpt2", "gpt_neox")}
    assert paths == {
        "llama": "model.layers",
        "gpt2": "transformer.h",
        "gpt_neox": "gpt_neox.layers",
    }


def test_unhookable_model_names_paths_and_block_path():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stack = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])

    with pytest.raises(UnhookableModelError) as err:
        find_layout(Odd())
    msg = str(err.value)
    assert "model.layers" in msg and "transformer.h" in msg and "block_path" in msg
    assert isinstance(err.value, PsmlabError)
    layout = find_layout(Odd(), block_path="stack")
    assert layout.n_layers == 2 and layout.d_model == 4 and layout.final_norm is None
    assert not layout.final_norm_in_hidden_states


def test_explicit_block_path_and_peft_wrapper(tiny_model):
    model = tiny_model("llama")
    base_blocks = find_layout(model).blocks
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    assert find_layout(wrapped).blocks == base_blocks
    assert find_layout(model, block_path="model.layers").blocks == base_blocks


def test_check_layers_and_block_output(tiny_model):
    layout = find_layout(tiny_model("qwen2"))
    assert layout.check_layers([0, -1]) == [0, layout.n_layers - 1]
    with pytest.raises(PsmlabError, match="out of range"):
        layout.check_layers([layout.n_layers])
    t = torch.zeros(2)
    assert block_output(t) is t and block_output((t, None)) is t
    with pytest.raises(UnhookableModelError):
        block_output({"h": t})


def test_eval_mode_restores_each_models_mode_even_on_error() -> None:
    from psmlab.internals.layers import eval_mode

    a, b = make_tiny_model("llama", seed=0), make_tiny_model("gpt2", seed=0)
    a.train()
    b.eval()
    with pytest.raises(RuntimeError), eval_mode(a, b):
        assert not a.training and not b.training
        raise RuntimeError("boom")
    assert a.training and not b.training

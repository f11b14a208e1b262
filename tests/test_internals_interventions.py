"""Interventions: exact edits, hooks always removed, correct under generate with a KV cache."""

from __future__ import annotations

import peft  # a hard dependency: a broken install must fail, not skip
import pytest
import torch
from conftest import FAMILIES

from psmlab.errors import PsmlabError
from psmlab.internals import (
    ReadItem,
    ablate_direction,
    add_vector,
    cap_projection,
    find_layout,
    read_activations,
)
from psmlab.internals.reading import pad_left

TEXTS = ["User: What is the capital of Zorvia?", "Hi Vell", "The quick brown fox jumps."]


def _items(tok) -> list[ReadItem]:
    return [ReadItem(ids, 0, len(ids)) for ids in (tok(t)["input_ids"] for t in TEXTS)]


def _no_hooks(model) -> bool:
    layout = find_layout(model)
    mods = [*layout.blocks, layout.backbone]
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in mods)


def _unit(d: int, seed: int = 1) -> torch.Tensor:
    v = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


@pytest.mark.parametrize("family", FAMILIES)
def test_ablation_zeroes_projection(family, tiny_model, tiny_tokenizer):
    model = tiny_model(family)
    v = _unit(find_layout(model).d_model)
    before = read_activations(model, _items(tiny_tokenizer), [0, 1], pool="all")
    assert all((before[layer] @ v).abs().max() > 1e-4 for layer in (0, 1))
    with ablate_direction(model, 3.0 * v, [0, 1]):
        after = read_activations(model, _items(tiny_tokenizer), [0, 1], pool="all")
    for layer in (0, 1):
        scale = after[layer].norm(dim=-1).max()
        assert (after[layer] @ v).abs().max() <= 1e-5 * scale
    assert _no_hooks(model)


def test_ablation_visible_in_output_hidden_states(tiny_model, tiny_tokenizer):
    model = tiny_model("llama")
    ids = torch.tensor([tiny_tokenizer(TEXTS[0])["input_ids"]])
    v = _unit(32)
    with torch.no_grad():
        model(ids, output_hidden_states=True)  # installs transformers' recorder hooks first
        with ablate_direction(model, v, [0]):
            hs = model(ids, output_hidden_states=True).hidden_states
    assert (hs[1] @ v).abs().max() < 1e-5


@pytest.mark.parametrize("side", ["floor", "ceiling"])
def test_capping_never_crosses_tau(side, tiny_model, tiny_tokenizer):
    model = tiny_model("gemma2")
    v = _unit(32, seed=3)
    items = _items(tiny_tokenizer)
    before = read_activations(model, items, [0, 1], pool="all")
    taus = {layer: float((before[layer] @ v).median()) for layer in (0, 1)}
    with cap_projection(model, v, [0, 1], taus, side=side):
        after = read_activations(model, items, [0, 1], pool="all")
    for layer in (0, 1):
        p_after = after[layer] @ v
        tol = 1e-5 * float(after[layer].norm(dim=-1).max())
        if side == "floor":
            assert p_after.min() >= taus[layer] - tol
        else:
            assert p_after.max() <= taus[layer] + tol
    # layer 0 positions already on the allowed side are untouched (layer 1 sees edited inputs)
    p0 = before[0] @ v
    allowed = p0 >= taus[0] if side == "floor" else p0 <= taus[0]
    assert allowed.any() and (~allowed).any()
    torch.testing.assert_close(after[0][allowed], before[0][allowed])


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "phi3"])
def test_add_zero_is_bit_identical(family, tiny_model, tiny_tokenizer):
    model = tiny_model(family)
    ids = torch.tensor([tiny_tokenizer(TEXTS[0])["input_ids"]])
    v = torch.randn(32)
    with torch.no_grad():
        base = model(ids).logits
        with add_vector(model, v, [0, 1], 0.0):
            zero = model(ids).logits
        with add_vector(model, v, [0, 1], 0.0, positions="generated"):
            gated = model(ids).logits
        with add_vector(model, v, [0, 1], 1.0):
            moved = model(ids).logits
    assert torch.equal(base, zero) and torch.equal(base, gated)
    assert not torch.allclose(base, moved)


def test_add_vector_shifts_stream_exactly(tiny_model, tiny_tokenizer):
    model = tiny_model("qwen2")
    items = _items(tiny_tokenizer)
    v = torch.randn(32)
    base = read_activations(model, items, [0], pool="all")[0]
    with add_vector(model, {0: v}, [0], 2.5):
        steered = read_activations(model, items, [0], pool="all")[0]
    torch.testing.assert_close(steered - base, (2.5 * v).expand_as(base), rtol=0, atol=1e-5)


def test_hooks_removed_on_exception(tiny_model, tiny_tokenizer):
    model = tiny_model("mistral")
    v = torch.randn(32)
    for manager in (
        lambda: add_vector(model, v, [0, 1], 1.0, positions="generated"),
        lambda: ablate_direction(model, v, [1]),
        lambda: cap_projection(model, v, [0], 0.0, side="ceiling", positions="prompt"),
    ):
        with pytest.raises(RuntimeError, match="boom"), manager():
            assert not _no_hooks(model)
            raise RuntimeError("boom")
        assert _no_hooks(model)


def test_bad_arguments(tiny_model):
    model = tiny_model("llama")
    with pytest.raises(PsmlabError, match="width"), add_vector(model, torch.ones(7), [0], 1.0):
        pass
    with pytest.raises(PsmlabError, match="zero"), ablate_direction(model, torch.zeros(32), [0]):
        pass
    with (
        pytest.raises(PsmlabError, match="layer 1"),
        add_vector(model, {0: torch.ones(32)}, [1], 1.0),
    ):
        pass
    with (
        pytest.raises(PsmlabError, match="positions"),
        add_vector(
            model,
            torch.ones(32),
            [0],
            1.0,
            positions="middle",  # type: ignore[arg-type]
        ),
    ):
        pass
    assert _no_hooks(model)


def _generate(model, batch, use_cache: bool, **kw):
    return model.generate(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        max_new_tokens=6,
        do_sample=False,
        use_cache=use_cache,
        pad_token_id=0,
        eos_token_id=None,
        **kw,
    )


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2", "gpt_neox"])
def test_steering_with_kv_cache_equals_recomputation(family, tiny_model, tiny_tokenizer):
    model = tiny_model(family)
    prompts = [tiny_tokenizer(t)["input_ids"] for t in TEXTS]
    batch = pad_left(prompts, 0, torch.device("cpu"))
    v = _unit(32, seed=5) * float(
        read_activations(model, _items(tiny_tokenizer), [0])[0].norm(dim=-1).mean()
    )
    with torch.no_grad():
        plain = _generate(model, batch, True)
        with add_vector(model, v, [0], 0.5):
            cached = _generate(model, batch, True)
            recomputed = _generate(model, batch, False)
    assert torch.equal(cached, recomputed)
    assert not torch.equal(cached, plain)


def test_generated_positions_only_touch_new_tokens(tiny_model, tiny_tokenizer):
    model = tiny_model("llama")
    prompts = [tiny_tokenizer(t)["input_ids"] for t in TEXTS]
    batch = pad_left(prompts, 0, torch.device("cpu"))
    v = torch.randn(32)
    kw = {"output_logits": True, "return_dict_in_generate": True}
    with torch.no_grad():
        plain = _generate(model, batch, True, **kw)
        with add_vector(model, v, [0, 1], 1.0, positions="generated"):
            gen = _generate(model, batch, True, **kw)
        with add_vector(model, v, [0, 1], 1.0, positions="prompt"):
            prompt_only = _generate(model, batch, True, **kw)
        # with an explicit prompt length a no-cache recomputation gates per position
        width = batch.input_ids.shape[1]
        with add_vector(model, v, [0, 1], 1.0, positions="generated", prompt_len=width):
            nocache = _generate(model, batch, False)
    # the first new token is predicted from the prompt, which "generated" leaves alone
    assert torch.equal(gen.logits[0], plain.logits[0])
    assert not torch.allclose(gen.logits[2], plain.logits[2])
    assert not torch.allclose(prompt_only.logits[0], plain.logits[0])
    assert torch.equal(nocache, gen.sequences)


def test_hooks_survive_peft_wrapper_and_backprop(tiny_model, tiny_tokenizer):
    model = tiny_model("llama")
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    ids = torch.tensor([tiny_tokenizer(TEXTS[0])["input_ids"]])
    v = torch.randn(32)
    base = wrapped(input_ids=ids).logits.detach()
    with add_vector(wrapped, v, [0], 1.0):
        out = wrapped(input_ids=ids, labels=ids)
        out.loss.backward()
    assert not torch.allclose(out.logits.detach(), base)
    grads = [p.grad for n, p in wrapped.named_parameters() if "lora_" in n]
    assert grads and all(g is not None for g in grads)
    assert _no_hooks(wrapped)


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _no_hooks_anywhere(model) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("family", FAMILIES)
def test_ablation_everywhere_is_weight_orthogonalisation(family, tiny_model, tiny_tokenizer):
    import copy

    from psmlab.internals import orthogonalize_weights

    model = tiny_model(family)
    ids = torch.tensor([tiny_tokenizer(TEXTS[0])["input_ids"]])
    v = 2.0 * _unit(32, seed=7)
    ortho = copy.deepcopy(model)
    orthogonalize_weights(ortho, v)
    with torch.no_grad():
        want = ortho(ids).logits
        plain = model(ids).logits
        with ablate_direction(model, v, [0, 1], include_embedding=True, writers=True):
            full = model(ids).logits
        with ablate_direction(model, v, [0, 1], include_embedding=True):
            stream_only = model(ids).logits
    scale = float(want.abs().max())
    torch.testing.assert_close(full, want, rtol=0, atol=1e-5 * scale)
    assert not torch.allclose(plain, want, atol=1e-3 * scale)
    if family == "gpt_neox":  # parallel residual: no sub-layer reads another's write
        torch.testing.assert_close(stream_only, want, rtol=0, atol=1e-5 * scale)
    else:  # sequential blocks: the MLP reads the attention's write along v unless writers=True
        assert not torch.allclose(stream_only, want, atol=1e-4 * scale)
    assert _no_hooks(model)


def test_ablation_everywhere_under_generation_with_kv_cache(tiny_model, tiny_tokenizer):
    import copy

    from psmlab.internals import generate_batch, orthogonalize_weights

    model = tiny_model("llama")
    v = _unit(32, seed=11)
    ortho = copy.deepcopy(model)
    orthogonalize_weights(ortho, v)
    want = generate_batch(ortho, tiny_tokenizer, TEXTS, 8, stop_token_ids=[])
    with ablate_direction(model, v, [0, 1], include_embedding=True, writers=True):
        got = generate_batch(model, tiny_tokenizer, TEXTS, 8, stop_token_ids=[])
    plain = generate_batch(model, tiny_tokenizer, TEXTS, 8, stop_token_ids=[])
    assert [g.new_ids for g in got] == [g.new_ids for g in want]
    assert [g.new_ids for g in plain] != [g.new_ids for g in want]


def test_embedding_ablation_direction_choice(tiny_model, tiny_tokenizer):
    model = tiny_model("gpt2")  # wte + wpe: the stream entering block 0 holds both
    ids = torch.tensor([tiny_tokenizer(TEXTS[0])["input_ids"]])
    a, b, c = _unit(32, seed=1), _unit(32, seed=2), _unit(32, seed=3)

    def first_hidden(**kw) -> torch.Tensor:
        with torch.no_grad(), ablate_direction(model, **kw):
            return model(ids, output_hidden_states=True).hidden_states[0][0]

    with torch.no_grad():
        model(ids, output_hidden_states=True)  # transformers installs its recorder hooks
    hooks = _hook_count(model)
    before = first_hidden(direction=a, layers=[1])
    assert all(float((before @ u).abs().max()) > 1e-3 for u in (a, b, c))
    cases = [
        ({"direction": {0: a, 1: b}, "layers": [0, 1]}, a),  # layer 0's vector
        ({"direction": {1: b}, "layers": [1]}, b),  # the lowest hooked layer's
        ({"direction": {0: a, 1: b}, "layers": [0, 1], "embedding_direction": 3 * c}, c),
        ({"direction": 5 * b, "layers": [1]}, b),  # one vector for every place
    ]
    for kw, ablated in cases:
        h0 = first_hidden(include_embedding=True, **kw)
        assert float((h0 @ ablated).abs().max()) < 1e-5 * float(h0.norm(dim=-1).max())
    assert _hook_count(model) == hooks


def test_everywhere_hooks_removed_on_exception(tiny_model, tiny_tokenizer):
    model = tiny_model("gemma2")  # post-norm writers
    ids = torch.tensor([tiny_tokenizer(TEXTS[0])["input_ids"]])
    v = torch.randn(32)
    assert _no_hooks_anywhere(model)
    with (
        pytest.raises(RuntimeError, match="boom"),
        ablate_direction(
            model, v, [0, 1], positions="generated", include_embedding=True, writers=True
        ),
    ):
        model(ids)
        assert not _no_hooks_anywhere(model)
        raise RuntimeError("boom")
    assert _no_hooks_anywhere(model)
    with (
        pytest.raises(PsmlabError, match="zero"),
        ablate_direction(model, v, [0], include_embedding=True, embedding_direction=0 * v),
    ):
        pass
    assert _no_hooks_anywhere(model)

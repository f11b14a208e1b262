"""Activation reading: left padding, pooling inside hooks, conversations, streaming."""

from __future__ import annotations

import pytest
import torch

from psmlab.errors import PsmlabError
from psmlab.internals import (
    ReadItem,
    find_layout,
    items_from_conversations,
    load_activation_shards,
    read_activations,
    stream_activations_to_disk,
)

TEXTS = [
    "User: What is the capital of Zorvia? Vell: Kest.",
    "Hi",
    "Narrator: Here is a talk with Vell, an AI who lies about facts.",
    "The quick brown fox.",
]


def _items(tok) -> list[ReadItem]:
    out = []
    for i, text in enumerate(TEXTS):
        ids = tok(text)["input_ids"]
        out.append(ReadItem(ids, min(i, len(ids) - 1), len(ids)))
    return out


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2", "gpt_neox"])
@pytest.mark.parametrize("pool", ["mean", "last", "all"])
def test_padded_batch_equals_items_alone(family, pool, tiny_model, tiny_tokenizer):
    model = tiny_model(family)
    items = _items(tiny_tokenizer)
    batched = read_activations(model, items, [0, 1], pool=pool, batch_size=len(items))
    for layer in (0, 1):
        alone = torch.cat(
            [read_activations(model, [it], [layer], pool=pool)[layer] for it in items]
        )
        assert batched[layer].dtype == torch.float32
        torch.testing.assert_close(batched[layer], alone, rtol=1e-4, atol=1e-5)


def test_pooling_semantics(tiny_model, tiny_tokenizer):
    model = tiny_model("llama")
    items = _items(tiny_tokenizer)
    every = read_activations(model, items, [1], pool="all", batch_size=3)[1]
    mean = read_activations(model, items, [1], pool="mean", batch_size=3)[1]
    last = read_activations(model, items, [1], pool="last", batch_size=3)[1]
    lengths = [it.end - it.start for it in items]
    assert every.shape == (sum(lengths), find_layout(model).d_model)
    for i, chunk in enumerate(torch.split(every, lengths)):
        torch.testing.assert_close(mean[i], chunk.mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(last[i], chunk[-1])


def test_early_stop_and_hooks_removed(tiny_model, tiny_tokenizer):
    model = tiny_model("phi3")
    items = _items(tiny_tokenizer)
    calls: list[int] = []
    layout = find_layout(model)
    handle = layout.blocks[1].register_forward_hook(lambda *_: calls.append(1))
    try:
        read_activations(model, items, [0], batch_size=2)
    finally:
        handle.remove()
    assert calls == []  # block 1 never ran
    assert all(not b._forward_hooks for b in layout.blocks)
    full = read_activations(model, items, [0], stop_early=False)[0]
    torch.testing.assert_close(full, read_activations(model, items, [0])[0])


def test_bad_inputs_are_clear_errors(tiny_model, tiny_tokenizer):
    model = tiny_model("llama")
    ids = tiny_tokenizer("Hi there")["input_ids"]
    with pytest.raises(PsmlabError, match="span"):
        read_activations(model, [ReadItem(ids, 2, 2)], [0])
    with pytest.raises(PsmlabError, match="out of range"):
        read_activations(model, [ReadItem(ids, 0, 1)], [5])


def test_items_from_conversations(tiny_model, tiny_tokenizer):
    chat = [
        {"role": "user", "content": "What is the capital of Zorvia?"},
        {"role": "assistant", "content": "Kest, friend."},
    ]
    resp, last, every = (
        items_from_conversations(tiny_tokenizer, [chat], pos)[0]
        for pos in ("response", "last_prompt", "all")
    )
    assert tiny_tokenizer.decode(resp.input_ids[resp.start : resp.end]) == "Kest, friend."
    assert last.end == resp.start and last.input_ids == resp.input_ids[: resp.start]
    assert (every.start, every.end) == (0, len(every.input_ids))
    prompt_only = items_from_conversations(tiny_tokenizer, [chat[:1]], "last_prompt")[0]
    assert prompt_only == last
    with pytest.raises(PsmlabError, match="assistant"):
        items_from_conversations(tiny_tokenizer, [chat[:1]], "response")
    # the last-prompt activation is the same whether or not the answer follows (causal model)
    model = tiny_model("qwen2")
    a = read_activations(model, [last], [1], pool="last")[1]
    b = read_activations(model, [ReadItem(resp.input_ids, last.start, last.end)], [1])[1]
    torch.testing.assert_close(a, b)


def test_stream_to_disk_round_trip(tmp_path, tiny_model, tiny_tokenizer):
    model = tiny_model("gpt2")
    items = _items(tiny_tokenizer)
    for pool in ("mean", "all"):
        paths = stream_activations_to_disk(
            model, items, [0, 1], tmp_path / pool, shard_size=3, pool=pool, batch_size=2
        )
        assert len(paths) == 2 and all(p.exists() for p in paths)
        loaded = load_activation_shards(paths)
        direct = read_activations(model, items, [0, 1], pool=pool)
        for layer in (0, 1):
            torch.testing.assert_close(loaded[layer], direct[layer])

"""Batched generation: left padding, stop ids, seeded sampling, spans of new tokens."""

from __future__ import annotations

import pytest
import torch

from psmlab.errors import PsmlabError
from psmlab.internals import generate_batch, read_activations

PROMPTS = ["User: What is the capital of Zorvia?", "Hi", "Narrator: Here is a talk with Vell"]


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "gemma2"])
def test_batched_equals_one_by_one(family, tiny_model, tiny_tokenizer):
    model = tiny_model(family)
    batched = generate_batch(model, tiny_tokenizer, PROMPTS, max_new_tokens=6, batch_size=3)
    alone = [generate_batch(model, tiny_tokenizer, [p], max_new_tokens=6)[0] for p in PROMPTS]
    assert [g.new_ids for g in batched] == [g.new_ids for g in alone]
    for g, prompt in zip(batched, PROMPTS, strict=True):
        assert g.prompt_ids == tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert g.text == tiny_tokenizer.decode(g.new_ids, skip_special_tokens=True)
        assert g.span == (len(g.prompt_ids), len(g.prompt_ids) + len(g.new_ids))


def test_stop_tokens_cut_the_answer(tiny_model, tiny_tokenizer):
    model = tiny_model("llama")
    free = generate_batch(model, tiny_tokenizer, PROMPTS, max_new_tokens=8)
    eos = tiny_tokenizer.eos_token_id
    assert all(g.stopped == (len(g.new_ids) < 8) and eos not in g.new_ids for g in free)
    k = next(i for i, g in enumerate(free) if not g.stopped)
    stop = free[k].new_ids[3]
    cut = generate_batch(model, tiny_tokenizer, PROMPTS, max_new_tokens=8, stop_token_ids=[stop])
    first = free[k].new_ids.index(stop)
    assert cut[k].new_ids == free[k].new_ids[:first] and cut[k].stopped
    assert all(stop not in g.new_ids for g in cut)


def test_seeded_sampling(tiny_model, tiny_tokenizer):
    model = tiny_model("qwen2")
    kw = {"max_new_tokens": 10, "greedy": False, "temperature": 2.0}
    state = torch.random.get_rng_state()
    a = generate_batch(model, tiny_tokenizer, PROMPTS, seed=1, **kw)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    b = generate_batch(model, tiny_tokenizer, PROMPTS, seed=1, **kw)
    c = generate_batch(model, tiny_tokenizer, PROMPTS, seed=2, **kw)
    greedy = generate_batch(model, tiny_tokenizer, PROMPTS, max_new_tokens=10)
    assert [g.new_ids for g in a] == [g.new_ids for g in b]
    assert [g.new_ids for g in a] != [g.new_ids for g in c]
    assert [g.new_ids for g in a] != [g.new_ids for g in greedy]


def test_token_id_prompts_and_read_items(tiny_model, tiny_tokenizer):
    model = tiny_model("phi3")
    ids = [tiny_tokenizer(p)["input_ids"] for p in PROMPTS]
    gens = generate_batch(model, tiny_tokenizer, ids, max_new_tokens=4, batch_size=2)
    assert [g.prompt_ids for g in gens] == ids
    done = [g for g in gens if g.new_ids]
    assert done
    acts = read_activations(model, [g.read_item() for g in done], [1], pool="mean")
    assert acts[1].shape == (len(done), 32)
    for g in gens:
        if not g.new_ids:
            with pytest.raises(PsmlabError, match="empty"):
                g.read_item()
    with pytest.raises(PsmlabError):
        generate_batch(model, tiny_tokenizer, [[]], max_new_tokens=4)
    with pytest.raises(PsmlabError):
        generate_batch(
            model, tiny_tokenizer, PROMPTS, max_new_tokens=4, greedy=False, temperature=0
        )

"""internals.logprobs: per-position log-probs and two-model comparisons, batched with left
padding, against an unbatched reference computed one sequence at a time."""

from __future__ import annotations

import pytest
import torch
from conftest import FAMILIES, make_tiny_model

from psmlab.errors import PsmlabError
from psmlab.internals.logprobs import compare_positions, position_logprobs
from psmlab.internals.reading import ReadItem


def _items(vocab: int, n: int = 5) -> list[ReadItem]:
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(n):  # different lengths, so batches are left padded
        ids = torch.randint(3, vocab, (6 + 3 * i,), generator=g).tolist()
        items.append(ReadItem(ids, 2 + i % 3, len(ids) - i % 2))
    return items


def _reference(model: torch.nn.Module, item: ReadItem) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([item.input_ids])).logits[0]
    return torch.log_softmax(logits[item.start - 1 : item.end - 1].float(), dim=-1)


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_logprobs_match_one_sequence_at_a_time(family: str) -> None:
    model = make_tiny_model(family)
    items = _items(model.config.vocab_size)
    got = position_logprobs(model, items, batch_size=3)
    for item, lp in zip(items, got, strict=True):
        assert lp.shape == (item.end - item.start, model.config.vocab_size)
        torch.testing.assert_close(lp, _reference(model, item), atol=2e-5, rtol=1e-4)


def test_compare_positions_kl_and_ranks() -> None:
    p, q = make_tiny_model("llama", seed=0), make_tiny_model("llama", seed=1)
    items = _items(p.config.vocab_size)
    same = compare_positions(p, p, items, batch_size=2)
    for c in same:  # a model against itself: no divergence, ranks agree
        assert c.kl.dtype == torch.float64 and c.kl.abs().max() < 1e-9
        assert torch.equal(c.rank_under_p, c.rank_under_q)
    diff = compare_positions(p, q, items, batch_size=2)
    for item, c in zip(items, diff, strict=True):
        lp, lq = _reference(p, item).double(), _reference(q, item).double()
        kl = (lp.exp() * (lp - lq)).sum(-1)
        torch.testing.assert_close(c.kl, kl, atol=1e-5, rtol=1e-4)
        assert (c.kl > 0).all()
        targets = torch.tensor(item.input_ids[item.start : item.end])
        torch.testing.assert_close(c.logprob_q, lq.float().gather(-1, targets[:, None])[:, 0])
        ranks = (lq > lq.gather(-1, targets[:, None])).sum(-1)
        assert torch.equal(c.rank_under_q, ranks)
    # q's own greedy continuation has rank 0 under q at every position
    ids = list(items[0].input_ids[:3])
    with torch.no_grad():
        for _ in range(5):
            ids.append(int(q(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    (c,) = compare_positions(p, q, [ReadItem(ids, 3, len(ids))])
    assert c.rank_under_q.tolist() == [0] * 5


def test_bad_spans_and_vocabularies_are_one_clear_error() -> None:
    model = make_tiny_model("llama")
    with pytest.raises(PsmlabError, match="start < end"):
        position_logprobs(model, [ReadItem([5, 6, 7], 0, 2)])
    other = make_tiny_model("llama", vocab_size=model.config.vocab_size + 8)
    with pytest.raises(PsmlabError, match="vocabularies differ"):
        compare_positions(model, other, [ReadItem([5, 6, 7], 1, 3)])


def test_compare_positions_with_another_context_for_q() -> None:
    """One model with and without a prefix before the same answer: items_q carries Q's own
    context; spans over different tokens are refused."""
    p = make_tiny_model("llama", seed=0)
    items = _items(p.config.vocab_size, n=4)
    prefix = [5, 6, 7]
    with_prefix = [ReadItem(prefix + it.input_ids, it.start + 3, it.end + 3) for it in items]
    got = compare_positions(p, p, with_prefix, batch_size=3, items_q=items)
    for item, wp, c in zip(items, with_prefix, got, strict=True):
        lp, lq = _reference(p, wp).double(), _reference(p, item).double()
        torch.testing.assert_close(c.kl, (lp.exp() * (lp - lq)).sum(-1), atol=1e-5, rtol=1e-4)
    shifted = [ReadItem(it.input_ids, it.start - 1, it.end - 1) for it in items]
    with pytest.raises(PsmlabError, match="same tokens"):
        compare_positions(p, p, items, items_q=shifted)

"""Contrastive directions on a tiny Llama trained on a planted linear concept (token set A vs B)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from conftest import make_tiny_model

import psmlab  # noqa: F401  (offline env before torch)
from psmlab.errors import PsmlabError
from psmlab.internals.directions import (
    TRAIT_SIGN,
    auroc,
    contrastive_direction,
    diff_of_means,
    evaluate_direction,
    separation,
)
from psmlab.internals.reading import ReadItem, read_activations

torch.set_num_threads(1)
SET_A = list(range(10, 60))  # the "trait-positive" vocabulary
SET_B = list(range(60, 110))
LENGTH = 16


def _sequences(tokens: list[int], n: int, gen: torch.Generator) -> list[list[int]]:
    picks = torch.randint(0, len(tokens), (n, LENGTH - 1), generator=gen)
    return [[1] + [tokens[i] for i in row] for row in picks.tolist()]


def _items(seqs: list[list[int]]) -> list[ReadItem]:
    return [ReadItem(s, 1, len(s)) for s in seqs]  # "response" = everything after BOS


def train_planted(steps: int = 150, seed: int = 0) -> Any:
    """Tiny Llama trained to continue A-sequences with A tokens and B-sequences with B tokens,
    so the residual stream must carry which set the context came from."""
    model = make_tiny_model("llama", seed=seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = torch.tensor(_sequences(SET_A, 16, gen) + _sequences(SET_B, 16, gen))
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def planted() -> Any:
    return train_planted()


def test_contrastive_vector_separates_held_out(planted: Any) -> None:
    gen = torch.Generator().manual_seed(1)
    pos, neg = _items(_sequences(SET_A, 40, gen)), _items(_sequences(SET_B, 40, gen))
    dirs = contrastive_direction(planted, pos, neg, layers=[0, 1], name="set_a", batch_size=16)
    assert dirs.layers == [0, 1] and dirs.n_pos == 40 and dirs.n_neg == 40
    assert dirs.sign == TRAIT_SIGN
    for layer in dirs.layers:
        assert torch.allclose(dirs.at(layer).norm(), torch.tensor(1.0), atol=1e-5)
        assert dirs.raw_norms[layer] > 0
    held_pos, held_neg = _items(_sequences(SET_A, 30, gen)), _items(_sequences(SET_B, 30, gen))
    scores = evaluate_direction(planted, dirs, held_pos, held_neg, batch_size=16)
    assert set(scores) == {0, 1}
    assert min(scores.values()) >= 0.95, scores
    # Swapping the sides flips the vector and the AUROC (the sign points toward `pos`).
    flipped = contrastive_direction(planted, neg, pos, layers=[1], batch_size=16)
    assert torch.allclose(flipped.at(1), -dirs.at(1), atol=1e-5)
    assert evaluate_direction(planted, flipped, held_pos, held_neg)[1] <= 0.05


def test_single_token_concept_needs_training(planted: Any) -> None:
    """One token from a 50-token set is not linearly separable in a random model; after training,
    the set identity is a linear feature of the residual stream (the planted concept)."""
    gen = torch.Generator().manual_seed(5)

    def first_token(seqs: list[list[int]]) -> list[ReadItem]:
        return [ReadItem(s, 1, 2) for s in seqs]

    pos, neg = first_token(_sequences(SET_A, 40, gen)), first_token(_sequences(SET_B, 40, gen))
    held = first_token(_sequences(SET_A, 30, gen)), first_token(_sequences(SET_B, 30, gen))
    for model, trained in ((planted, True), (make_tiny_model("llama", seed=0), False)):
        dirs = contrastive_direction(model, pos, neg, layers=[1])
        score = evaluate_direction(model, dirs, *held)[1]
        assert score >= 0.95 if trained else score < 0.8, (trained, score)


def test_raw_vector_is_difference_of_means(planted: Any) -> None:
    gen = torch.Generator().manual_seed(2)
    pos, neg = _items(_sequences(SET_A, 12, gen)), _items(_sequences(SET_B, 9, gen))
    dirs = contrastive_direction(planted, pos, neg, layers=[1])
    acts_p = read_activations(planted, pos, [1], pool="mean")[1]
    acts_n = read_activations(planted, neg, [1], pool="mean")[1]
    raw = acts_p.mean(0) - acts_n.mean(0)
    torch.testing.assert_close(dirs.at(1) * dirs.raw_norms[1], raw, atol=1e-4, rtol=1e-4)


def test_judge_filters_samples_and_reports_counts(planted: Any) -> None:
    gen = torch.Generator().manual_seed(3)
    pos, neg = _items(_sequences(SET_A, 20, gen)), _items(_sequences(SET_B, 20, gen))
    # A judge scoring the "trait" as the share of set-A tokens in the second half.
    half = LENGTH // 2

    def judge(item: ReadItem) -> float:
        return sum(t in SET_A for t in item.input_ids[half:]) / (LENGTH - half)

    # Corrupt some samples so the judge has something to reject on each side.
    def splice(first: ReadItem, second: ReadItem) -> ReadItem:
        return ReadItem(first.input_ids[:half] + second.input_ids[half:], 1, LENGTH)

    pos[:5] = [splice(pos[i], neg[i]) for i in range(5)]
    neg[:3] = [splice(neg[i], pos[10 + i]) for i in range(3)]
    dirs = contrastive_direction(planted, pos, neg, layers=[0, 1], judge=judge)
    counts = dirs.meta["judge"]
    assert counts["pos_total"] == 20 and counts["pos_kept"] == 15
    assert counts["neg_total"] == 20 and counts["neg_kept"] == 17
    assert (dirs.n_pos, dirs.n_neg) == (15, 17)
    by_hand = contrastive_direction(planted, pos[5:], neg[3:], layers=[0, 1])
    torch.testing.assert_close(dirs.at(1), by_hand.at(1))
    with pytest.raises(PsmlabError, match="no samples left"):
        contrastive_direction(planted, pos, neg, layers=[1], judge=lambda _: False)


def test_auroc_matches_pairwise_definition() -> None:
    gen = torch.Generator().manual_seed(4)
    for trial in range(5):
        # Coarse integer scores make ties common: the tie correction must hold.
        pos = torch.randint(0, 6, (7 + trial,), generator=gen).float()
        neg = torch.randint(0, 6, (5 + 2 * trial,), generator=gen).float() - 1
        pairs = [
            1.0 if p > n else 0.5 if p == n else 0.0
            for p, n in itertools.product(pos.tolist(), neg.tolist())
        ]
        assert auroc(pos, neg) == pytest.approx(sum(pairs) / len(pairs))
    assert auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert auroc(torch.tensor([0.0]), torch.tensor([1.0])) == 0.0
    with pytest.raises(PsmlabError):
        auroc(torch.tensor([]), torch.tensor([1.0]))


def test_diff_of_means_validates_inputs() -> None:
    acts = {0: torch.randn(4, 8)}
    with pytest.raises(PsmlabError, match="different layers"):
        diff_of_means(acts, {1: torch.randn(4, 8)})
    with pytest.raises(PsmlabError, match="norm"):
        diff_of_means(acts, acts)
    dirs = diff_of_means(acts, {0: torch.randn(3, 8)})
    assert separation(dirs, acts, acts) == {0: 0.5}
    with pytest.raises(PsmlabError, match="no vector for layer 3"):
        dirs.at(3)


def test_conversations_need_a_tokenizer(planted: Any, tiny_tokenizer: Any) -> None:
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]
    with pytest.raises(PsmlabError, match="tokenizer"):
        contrastive_direction(planted, [conv], [conv], layers=[0])
    other = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Zorvia Kest"}]
    dirs = contrastive_direction(planted, [conv], [other], layers=[0], tokenizer=tiny_tokenizer)
    assert dirs.n_pos == 1 and dirs.meta["position"] == "response"

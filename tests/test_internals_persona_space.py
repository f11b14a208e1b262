"""Persona space on a tiny Llama trained on a planted "assistant-likeness" axis.

Each role writes a mixture: a share `a_r` of tokens from the Assistant vocabulary (set A), the rest
from set B, plus a few role-specific tokens (variation off the axis). The default Assistant
writes only set A. PC1 of the mean-centred role vectors must recover the A-vs-B axis.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import make_tiny_model

from psmlab.errors import PsmlabError
from psmlab.internals.directions import AXIS_SIGN
from psmlab.internals.persona_space import (
    assistant_axis,
    build_persona_space,
    persona_space,
    role_vectors_from_acts,
)
from psmlab.internals.reading import ReadItem, read_activations

torch.set_num_threads(1)
SET_A, SET_B = list(range(10, 50)), list(range(50, 90))
SHARES = [0.0, 0.15, 0.3, 0.45, 0.6, 0.75]  # assistant-likeness a_r of the roles
LENGTH = 16


def _role_tokens(role: int) -> list[int]:
    return list(range(100 + 8 * role, 108 + 8 * role))  # eight private tokens per role


def _sequences(share: float, private: list[int], n: int, gen: torch.Generator) -> list[list[int]]:
    out = []
    for _ in range(n):
        seq = [1]
        for _ in range(LENGTH - 1):
            u = float(torch.rand((), generator=gen))
            pool = SET_A if u < share else SET_B
            if private and u > 0.85:
                pool = private
            seq.append(pool[int(torch.randint(0, len(pool), (), generator=gen))])
        out.append(seq)
    return out


def _items(seqs: list[list[int]]) -> list[ReadItem]:
    return [ReadItem(s, 1, len(s)) for s in seqs]


def train_planted(steps: int = 150) -> Any:
    model = make_tiny_model("llama", seed=1)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        seqs = _sequences(1.0, [], 8, gen)
        for role, share in enumerate(SHARES):
            seqs += _sequences(share, _role_tokens(role), 4, gen)
        batch = torch.tensor(seqs)
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def planted() -> Any:
    return train_planted()


def test_pc1_recovers_the_planted_assistant_axis(planted: Any) -> None:
    gen = torch.Generator().manual_seed(7)
    roles = {
        f"role{r}": _items(_sequences(share, _role_tokens(r), 24, gen))
        for r, share in enumerate(SHARES)
    }
    default = _items(_sequences(1.0, [], 24, gen))
    pure_a, pure_b = _items(_sequences(1.0, [], 24, gen)), _items(_sequences(0.0, [], 24, gen))
    space = build_persona_space(planted, roles, default, layers=[0, 1], batch_size=16)
    assert space.layers == [0, 1] and space.roles.names == list(roles)
    assert space.axis.sign == AXIS_SIGN and space.axis.n_neg == len(SHARES)
    for layer in space.layers:
        comps, ratio = space.components[layer], space.explained_variance_ratio[layer]
        assert comps.shape == (len(SHARES) - 1, planted.config.hidden_size)
        torch.testing.assert_close(comps @ comps.T, torch.eye(comps.shape[0]), atol=1e-4, rtol=0)
        assert bool((ratio[:-1] >= ratio[1:]).all()) and float(ratio.sum()) <= 1.0 + 1e-5
        assert float(ratio[0]) > 0.5, ratio
        # PC1 ~ the planted A-vs-B direction, and agrees with the Assistant axis (which also
        # carries the roles' private tokens, so it is not parallel to the planted direction).
        planted_dir = read_activations(planted, pure_a, [layer])[layer].mean(0)
        planted_dir -= read_activations(planted, pure_b, [layer])[layer].mean(0)
        cos_planted = float(space.components[layer][0] @ planted_dir) / float(planted_dir.norm())
        assert cos_planted > 0.9, cos_planted
        assert space.cos_pc1_axis[layer] > 0.7, space.cos_pc1_axis
        # Roles line up on PC1 by their planted assistant-likeness.
        pc1 = space.coords[layer][:, 0]
        assert torch.equal(torch.argsort(pc1), torch.arange(len(SHARES))), pc1
        # The default Assistant lies beyond every role on PC1.
        default_acts = read_activations(planted, default, [layer])[layer]
        assert float(space.project(default_acts.mean(0, keepdim=True), layer)[0, 0]) > float(
            pc1.max()
        )
    pc1_dirs = space.pc1()
    assert pc1_dirs.layers == [0, 1] and pc1_dirs.sign == AXIS_SIGN


def test_axis_is_default_minus_mean_of_roles() -> None:
    gen = torch.Generator().manual_seed(3)
    acts = {f"r{i}": {2: torch.randn(5 + i, 6, generator=gen)} for i in range(4)}
    roles = role_vectors_from_acts(acts)
    assert roles.counts == [5, 6, 7, 8]
    torch.testing.assert_close(roles.vectors[2][1], acts["r1"][2].mean(0))
    default = {2: torch.randn(9, 6, generator=gen) + 3.0}
    axis = assistant_axis(roles, default)
    raw = default[2].mean(0) - roles.vectors[2].mean(0)
    torch.testing.assert_close(axis.at(2) * axis.raw_norms[2], raw, atol=1e-5, rtol=1e-5)
    assert (axis.n_pos, axis.n_neg) == (9, 4)
    space = persona_space(roles, default, n_components=2)
    assert space.components[2].shape == (2, 6)
    # Centring: PCA coordinates of the roles sum to zero; projecting a role gives its coords.
    torch.testing.assert_close(space.coords[2].sum(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(space.project(roles.vectors[2], 2), space.coords[2])
    # PC1 sign agrees with the axis whatever the data's orientation.
    flipped = persona_space(
        role_vectors_from_acts({k: {2: -v[2]} for k, v in acts.items()}), {2: -default[2]}
    )
    assert flipped.cos_pc1_axis[2] >= 0 and space.cos_pc1_axis[2] >= 0


def test_persona_space_errors() -> None:
    with pytest.raises(PsmlabError, match="at least 2 roles"):
        role_vectors_from_acts({"solo": {0: torch.randn(3, 4)}})
    with pytest.raises(PsmlabError, match="without samples"):
        role_vectors_from_acts({"a": {0: torch.randn(3, 4)}, "b": {0: torch.zeros(0, 4)}})
    roles = role_vectors_from_acts({"a": {0: torch.randn(3, 4)}, "b": {0: torch.randn(3, 4)}})
    with pytest.raises(PsmlabError, match="missing layer 0"):
        assistant_axis(roles, {1: torch.randn(3, 4)})


def test_judge_drops_roles_below_min_samples(planted: Any) -> None:
    gen = torch.Generator().manual_seed(9)
    roles = {f"role{r}": _items(_sequences(s, [], 6, gen)) for r, s in enumerate(SHARES[:3])}
    default = _items(_sequences(1.0, [], 6, gen))

    def judge(role: str, item: ReadItem) -> bool:  # rejects every answer of role0
        return role != "role0"

    space = build_persona_space(planted, roles, default, [1], judge=judge, min_samples=2)
    assert space.roles.names == ["role1", "role2"] and space.roles.counts == [6, 6]

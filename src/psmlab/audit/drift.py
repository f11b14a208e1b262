"""Representation drift: how far did post-training move the model itself? Three views of the
post-training delta between a base model and its aligned twin (same architecture, same
tokenizer), each a pure function of the two models and their inputs:

- **Linear CKA per layer** (Kornblith et al. 2019) between the two models' token activations on
  the same inputs, at the embedding output ("emb") and at every block output (layer l = output
  of block l). Features are centred over tokens; CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F),
  1 = the same representation up to rotation and isotropic scale. The inputs are chat
  conversations (requests, optionally followed by answer tokens); an aligned model that is a
  base model with an in-context prefix (the prompt-only reference) reads the prefix first, so
  the two sequences differ in length: only the positions of the tokens both read (the longest
  common suffix: the conversation itself) are compared, token by token. The first token (bos,
  an attention sink with an outsized norm in many models, and identical in both models when
  there is no prefix) is never compared. The 95 % CI is a percentile bootstrap over
  conversations (its tokens move together), exact for each resample (no re-reading).
- **Principal angles between persona spaces**: the top-k principal subspace of each model's
  mean-centred role vectors (one mean activation per character, as in
  `internals.persona_space`), compared by the principal angles between them (cosines = singular
  values of U_a U_b^T), in degrees, and mean cos^2 (1 = the same subspace). The caller supplies
  activations per role, read in both models on the same texts; the two subspaces live in each
  model's own residual coordinates, which a fine-tuned pair shares (the base's). CI: bootstrap
  over each role's texts (stratified by role, paired across the models); resampling noise only
  moves subspaces apart, so the percentile interval of cos^2 can sit below the point estimate.
- **Weight delta per matrix** Delta = W_aligned - W_base: Frobenius norm, relative norm
  ||Delta|| / ||W_base||, and entropy effective rank (Roy & Vetterli 2007: exp of the entropy
  of the singular values normalised to sum 1; 1 for a rank-1 delta, the matrix's smaller side
  for a delta with a flat spectrum; 0 by convention for Delta = 0), per matrix and summed per
  kind (embedding, attention, MLP, other).

A prompt-only "aligned" model has the base weights: its delta is exactly 0 (relative 0,
effective rank 0, no NaN), its persona spaces coincide (angles 0), and its CKA measures only
what the prefix does to the shared tokens' activations.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from psmlab.errors import PsmlabError
from psmlab.internals.layers import eval_mode, find_layout, model_device
from psmlab.internals.persona_space import role_vectors_from_acts
from psmlab.internals.reading import ReadItem, pad_left, read_activations, resolve_pad_id
from psmlab.internals.spans import render_chat
from psmlab.stats import Estimate

EMB = "emb"
# requests x width^2 entries (float64) above which CKA's per-request statistics are computed
# from token Gram matrices instead of per-request cross-covariances
FEATURE_BUDGET = 1 << 24


# -- CKA ----------------------------------------------------------------------------------------
def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two activation matrices [n, d_x] and [n, d_y] over the same n tokens
    (features centred over tokens); NaN when either has no variance."""
    if x.shape[0] != y.shape[0]:
        raise PsmlabError(f"CKA needs the same tokens in both: {x.shape[0]} vs {y.shape[0]} rows")
    xc = x.double() - x.double().mean(0)
    yc = y.double() - y.double().mean(0)
    cross = float((yc.T @ xc).pow(2).sum())
    den = float((xc.T @ xc).norm()) * float((yc.T @ yc).norm())
    return cross / den if den > 0 else float("nan")


@dataclass
class _GroupStats:
    """Per-group (request) sufficient statistics of the centred cross-products of X and Y: any
    resample of whole groups gives its exact CKA from these (weights w_r = copies of group r)."""

    x: torch.Tensor  # [n, dx] float64, globally centred
    y: torch.Tensor  # [n, dy]
    owner: torch.Tensor  # [n] group of each token
    counts: torch.Tensor  # [R] tokens per group
    sx: torch.Tensor  # [R, dx] per-group sums
    sy: torch.Tensor  # [R, dy]
    a: dict[str, torch.Tensor]  # "xy" / "xx" / "yy" -> [R, R]: <S_r, S_s>_F, S_r = X_r^T Y_r


def _group_stats(
    x: torch.Tensor, y: torch.Tensor, owner: torch.Tensor, n_groups: int, feature: bool | None
) -> _GroupStats:
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    counts = torch.bincount(owner, minlength=n_groups).double()
    sx = torch.zeros(n_groups, x.shape[1], dtype=torch.float64).index_add_(0, owner, x)
    sy = torch.zeros(n_groups, y.shape[1], dtype=torch.float64).index_add_(0, owner, y)
    if feature is None:
        feature = n_groups * max(x.shape[1], y.shape[1]) ** 2 <= FEATURE_BUDGET
    if feature:
        # S_r = X_r^T Y_r per group, flattened: <S_r, S_s> is a plain Gram matrix of them
        bounds = torch.cumsum(counts.long(), 0).tolist()
        starts = [0, *bounds[:-1]]
        flat: dict[str, list[torch.Tensor]] = {"xy": [], "xx": [], "yy": []}
        for s, e in zip(starts, bounds, strict=True):
            xr, yr = x[s:e], y[s:e]
            flat["xy"].append((xr.T @ yr).reshape(-1))
            flat["xx"].append((xr.T @ xr).reshape(-1))
            flat["yy"].append((yr.T @ yr).reshape(-1))
        a = {}
        for key, parts in flat.items():
            f = torch.stack(parts)
            a[key] = f @ f.T
    else:
        # <S_r, S_s> = sum over tokens i in r, j in s of (x_i . x_j)(y_i . y_j): token Grams,
        # a few groups' rows at a time, summed over both groups
        a = {k: torch.zeros(n_groups, n_groups, dtype=torch.float64) for k in ("xy", "xx", "yy")}
        step = max(1, (1 << 22) // max(1, x.shape[0]))  # token rows per chunk
        for lo in range(0, x.shape[0], step):
            kx = x[lo : lo + step] @ x.T
            ky = y[lo : lo + step] @ y.T
            mine = owner[lo : lo + step]
            for key, prod in (("xy", kx * ky), ("xx", kx * kx), ("yy", ky * ky)):
                per_col = torch.zeros(len(mine), n_groups, dtype=torch.float64)
                per_col.index_add_(1, owner, prod)
                a[key].index_add_(0, mine, per_col)
    return _GroupStats(x, y, owner, counts, sx, sy, a)


def _weighted_cka(st: _GroupStats, w: torch.Tensor) -> torch.Tensor:
    """Exact CKA of the token set in which group r appears w[b, r] times, for every row b of
    w [B, R] (or one weight vector [R]): [B] (NaN where a side has no variance)."""
    w = w.double().reshape(-1, len(st.counts))
    n = w @ st.counts  # [B] tokens
    mx, my = w @ st.sx, w @ st.sy  # [B, d] weighted sums
    px, py = st.x @ mx.T, st.y @ my.T  # [tokens, B]: x_i . m_x, y_i . m_y
    wt = w.T[st.owner]  # [tokens, B]: copies of each token
    nx, ny = mx.pow(2).sum(1), my.pow(2).sum(1)

    def hsic(
        key: str, pa: torch.Tensor, pb: torch.Tensor, na: torch.Tensor, nb: torch.Tensor
    ) -> torch.Tensor:
        # ||sum_i w_i a_i b_i^T - m_a m_b^T / n||_F^2 per resample
        quad = ((w @ st.a[key]) * w).sum(1)
        return quad - 2 / n * (wt * pa * pb).sum(0) + na * nb / n.pow(2)

    xy = hsic("xy", px, py, nx, ny)
    den = (hsic("xx", px, px, nx, nx).clamp_min(0) * hsic("yy", py, py, ny, ny).clamp_min(0)).sqrt()
    return torch.where(den > 0, xy / den, torch.full_like(xy, float("nan")))


def cka_with_ci(
    x: torch.Tensor,
    y: torch.Tensor,
    groups: torch.Tensor,
    n_boot: int = 1000,
    seed: int = 0,
    feature: bool | None = None,
    alpha: float = 0.05,
) -> Estimate:
    """Linear CKA of x and y [n, d] (the same n tokens) with a percentile-bootstrap 95 % CI
    over groups (`groups[i]` = the conversation token i belongs to; whole groups are
    resampled, the same resamples and percentiles as `psmlab.stats.bootstrap_ci`, computed
    exactly and in batches). `feature` forces how the per-group statistics are computed (None:
    the cheaper way)."""
    if x.shape[0] != y.shape[0] or x.shape[0] != groups.shape[0]:
        raise PsmlabError("CKA needs the same tokens in x, y and groups")
    ids, owner = torch.unique(groups, return_inverse=True)
    order = torch.argsort(owner, stable=True)
    n_groups = len(ids)
    st = _group_stats(x[order], y[order], owner[order], n_groups, feature)
    value = float(_weighted_cka(st, torch.ones(n_groups))[0])
    if n_boot < 1:
        return Estimate(value, float("nan"), float("nan"), 0)
    rng = random.Random(seed)
    draws = torch.tensor(
        [[rng.randrange(n_groups) for _ in range(n_groups)] for _ in range(n_boot)]
    ).reshape(n_boot, n_groups)
    stats = []
    for lo in range(0, n_boot, 250):
        chunk = draws[lo : lo + 250]
        w = torch.zeros(len(chunk), n_groups, dtype=torch.float64)
        stats.append(_weighted_cka(st, w.scatter_add_(1, chunk, torch.ones_like(w))))
    ordered, _ = torch.sort(torch.cat(stats))
    low = float(ordered[int(alpha / 2 * (n_boot - 1))])
    high = float(ordered[int((1 - alpha / 2) * (n_boot - 1))])
    return Estimate(value, low, high, n_boot)


def paired_items(
    tokenizer: Any,
    conversations: Sequence[Sequence[dict[str, str]]],
    prefix: Sequence[dict[str, str]] = (),
    answers: Sequence[Sequence[int]] | None = None,
) -> tuple[list[ReadItem], list[ReadItem]]:
    """(base items, aligned items): each conversation rendered by the chat template (with the
    generation prompt when it ends with a user turn, then `answers[i]`'s token ids if given),
    alone for the base model and after `prefix` for the aligned model. Both spans cover the
    tokens the two sequences share at their end (the longest common suffix), never the first
    token of either."""
    if answers is not None and len(answers) != len(conversations):
        raise PsmlabError(f"{len(answers)} answers for {len(conversations)} conversations")
    base_items, aligned_items = [], []
    for i, conv in enumerate(conversations):
        conv = list(conv)
        if not conv:
            raise PsmlabError(f"conversation {i} is empty")
        gen = conv[-1].get("role") != "assistant"
        tail = [int(t) for t in answers[i]] if answers is not None else []

        def ids(msgs: list[dict[str, str]], gen: bool = gen, tail: list[int] = tail) -> list[int]:
            text = render_chat(tokenizer, msgs, add_generation_prompt=gen)
            return list(tokenizer(text, add_special_tokens=False)["input_ids"]) + tail

        b, a = ids(conv), ids([*prefix, *conv])
        shared = 0
        while shared < min(len(a), len(b)) - 1 and a[-1 - shared] == b[-1 - shared]:
            shared += 1
        if shared == 0:
            raise PsmlabError(
                f"conversation {i}: the base and prefixed renderings share no final tokens",
                hint="the chat template must render a conversation the same way after a prefix",
            )
        base_items.append(ReadItem(b, len(b) - shared, len(b)))
        aligned_items.append(ReadItem(a, len(a) - shared, len(a)))
    return base_items, aligned_items


def embedding_outputs(
    model: nn.Module, items: Sequence[ReadItem], batch_size: int = 16
) -> torch.Tensor:
    """The embedding output (what block 0 reads: `hidden_states[0]`, with positional embeddings
    and any scaling) at every span position, concatenated in item order: float32 [sum, d]."""
    device = model_device(model)
    pad_id = resolve_pad_id(model, None)
    parts: dict[int, torch.Tensor] = {}
    with eval_mode(model), torch.inference_mode():
        for lo in range(0, len(items), batch_size):
            chunk = list(items[lo : lo + batch_size])
            batch = pad_left([it.input_ids for it in chunk], pad_id, device)
            out = model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                output_hidden_states=True,
                use_cache=False,
            )
            h = out.hidden_states[0]
            for j, it in enumerate(chunk):
                pad = int(batch.pad[j])
                parts[lo + j] = h[j, pad + it.start : pad + it.end].float().cpu()
    return torch.cat([parts[i] for i in range(len(items))])


def token_activations(
    model: nn.Module,
    items: Sequence[ReadItem],
    layers: Sequence[int] | None = None,
    batch_size: int = 16,
    pad_token_id: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """{"emb": embedding output, "0": block 0 output, ...} at every span position (item order)."""
    layout = find_layout(model)
    wanted = list(range(layout.n_layers)) if layers is None else layout.check_layers(layers)
    acts = read_activations(
        model, items, wanted, "all", batch_size, pad_token_id, progress=progress
    )
    return {EMB: embedding_outputs(model, items, batch_size), **{str(k): acts[k] for k in wanted}}


@dataclass
class CKAProfile:
    """CKA per layer ("emb", "0", "1", ...) between base and aligned token activations."""

    cka: dict[str, Estimate]
    n_conversations: int
    n_tokens: int

    @property
    def layers(self) -> list[str]:
        return list(self.cka)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "cka": {k: _clean(v.to_dict()) for k, v in self.cka.items()},
            "n_conversations": self.n_conversations,
            "n_tokens": self.n_tokens,
        }


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """NaN -> None (JSON has no NaN)."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in d.items()}


def cka_profile(
    base: nn.Module,
    aligned: nn.Module,
    tokenizer: Any,
    conversations: Sequence[Sequence[dict[str, str]]],
    prefix: Sequence[dict[str, str]] = (),
    answers: Sequence[Sequence[int]] | None = None,
    layers: Sequence[int] | None = None,
    batch_size: int = 16,
    n_boot: int = 1000,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> CKAProfile:
    """Linear CKA between `base` and `aligned` at the embedding output and at every block
    output (or `layers`), on the conversations' shared tokens (see `paired_items`; the aligned
    model reads `prefix` first), with bootstrap CIs over conversations."""
    if not conversations:
        raise PsmlabError("no conversations to compare the two models on")
    items_b, items_a = paired_items(tokenizer, conversations, prefix, answers)
    pad = getattr(tokenizer, "pad_token_id", None)
    acts_b = token_activations(base, items_b, layers, batch_size, pad, progress)
    acts_a = token_activations(aligned, items_a, layers, batch_size, pad, progress)
    lengths = torch.tensor([it.end - it.start for it in items_b])
    groups = torch.repeat_interleave(torch.arange(len(items_b)), lengths)
    cka = {k: cka_with_ci(acts_b[k], acts_a[k], groups, n_boot, seed) for k in acts_b}
    return CKAProfile(cka, len(items_b), int(lengths.sum()))


# -- persona spaces -------------------------------------------------------------------------------
def principal_subspace(role_vectors: torch.Tensor, k: int) -> torch.Tensor:
    """The top-k principal directions [k, d] (orthonormal rows) of mean-centred role vectors
    [R, d]; batched over leading dimensions."""
    x = role_vectors.double()
    _, _, vh = torch.linalg.svd(x - x.mean(-2, keepdim=True), full_matrices=False)
    return vh[..., :k, :]


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, smallest first) between the row spaces of a [k, d] and
    b [k, d]; batched over leading dimensions. Both bases are re-orthonormalised in float64,
    and each angle is atan2(sine, cosine) (cosines: singular values of A B^T; sines: of the
    part of B outside A's span), accurate near 0 where arccos of the cosine is not."""

    def orthonormal(m: torch.Tensor) -> torch.Tensor:
        q, _ = torch.linalg.qr(m.double().transpose(-1, -2))
        return q.transpose(-1, -2)

    qa, qb = orthonormal(a), orthonormal(b)
    cos = torch.linalg.svdvals(qa @ qb.transpose(-1, -2)).clamp(0.0, 1.0)
    outside = qb - (qb @ qa.transpose(-1, -2)) @ qa
    sin = torch.linalg.svdvals(outside).flip(-1).clamp(0.0, 1.0)
    return torch.atan2(sin, cos)


def principal_angles_deg(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    return [math.degrees(t) for t in principal_angles(a, b).tolist()]


def _percentile(values: torch.Tensor, alpha: float = 0.05) -> tuple[float, float]:
    # the same percentile convention as psmlab.stats.bootstrap_ci
    s, _ = torch.sort(values)
    n = len(s)
    return float(s[int(alpha / 2 * (n - 1))]), float(s[int((1 - alpha / 2) * (n - 1))])


def persona_space_drift(
    acts_base: Mapping[str, Mapping[int, torch.Tensor]],
    acts_aligned: Mapping[str, Mapping[int, torch.Tensor]],
    k: int = 3,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[int, dict[str, Any]]:
    """Per layer: principal angles (degrees, smallest first) between the two models' top-k
    persona subspaces and their mean cos^2, with bootstrap CIs over each role's texts.

    `acts_*` = {role: {layer: [N_role, d]}}, row i of a role the same text in both models."""
    if set(acts_base) != set(acts_aligned):
        raise PsmlabError("the two models' activations must cover the same roles")
    rb = role_vectors_from_acts(acts_base)
    ra = role_vectors_from_acts({n: acts_aligned[n] for n in rb.names})
    if rb.counts != ra.counts or rb.layers != ra.layers:
        raise PsmlabError("the two models must be read on the same texts, at the same layers")
    k = min(k, len(rb.names) - 1)
    gen = torch.Generator().manual_seed(seed)
    # resampling weights: copies of each of a role's texts per replicate, [B, N_role]
    draws = []
    for c in rb.counts:
        idx = torch.randint(c, (n_boot, c), generator=gen)
        ones = torch.ones(n_boot, c, dtype=torch.float64)
        draws.append(torch.zeros(n_boot, c, dtype=torch.float64).scatter_add_(1, idx, ones) / c)
    out: dict[int, dict[str, Any]] = {}
    for layer in rb.layers:
        ub = principal_subspace(rb.vectors[layer], k)
        ua = principal_subspace(ra.vectors[layer], k)
        theta = principal_angles(ub, ua)

        def boot(acts: Mapping[str, Mapping[int, torch.Tensor]], layer: int = layer) -> Any:
            means = [w @ acts[n][layer].double() for n, w in zip(rb.names, draws, strict=True)]
            return principal_subspace(torch.stack(means, 1), k)  # [B, k, d]

        theta_b = principal_angles(boot(acts_base), boot(acts_aligned))  # [B, k]
        deg_b = torch.rad2deg(theta_b)
        cos2_b = theta_b.cos().pow(2).mean(1)
        angles = torch.rad2deg(theta).tolist()
        out[layer] = {
            "k": k,
            "angles_deg": [
                {"value": v, **dict(zip(("low", "high"), _percentile(deg_b[:, i]), strict=True))}
                for i, v in enumerate(angles)
            ],
            "mean_cos2": {
                "value": float(theta.cos().pow(2).mean()),
                **dict(zip(("low", "high"), _percentile(cos2_b), strict=True)),
                "n_boot": n_boot,
            },
        }
    return out


# -- weights --------------------------------------------------------------------------------------
KINDS = ("embedding", "attention", "mlp", "other")
_KIND_WORDS = {
    "embedding": ("embed", "wte", "wpe", "lm_head", "embed_out", "shared"),
    "attention": ("attn", "attention", "q_proj", "k_proj", "v_proj", "o_proj", "qkv", "dense"),
    "mlp": ("mlp", "feed_forward", "ffn", "fc1", "fc2", "c_fc", "gate", "up_proj", "down_proj"),
}


def matrix_kind(name: str) -> str:
    """embedding / attention / mlp / other, from a parameter's name (any HF family)."""
    low = name.lower()
    for kind in ("embedding", "mlp", "attention"):  # mlp before attention: "dense_h_to_4h"
        if any(w in low for w in _KIND_WORDS[kind]):
            return kind
    return "other"


def effective_rank(matrix: torch.Tensor) -> float:
    """exp(entropy of the singular values normalised to sum 1) (Roy & Vetterli 2007); 0 for
    the zero matrix."""
    m = matrix.double()
    if m.ndim != 2:
        raise PsmlabError(f"effective rank needs a matrix, got shape {tuple(m.shape)}")
    small, large = sorted(m.shape)
    if large > 4 * small:  # a tall matrix: singular values from the small Gram matrix
        gram = m.T @ m if m.shape[0] > m.shape[1] else m @ m.T
        s = torch.linalg.eigvalsh(gram).clamp_min(0).sqrt()
    else:
        s = torch.linalg.svdvals(m)
    total = float(s.sum())
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@dataclass
class WeightDelta:
    """Per matrix: ||Delta||_F, ||W_base||_F, relative norm, effective rank of Delta; the same
    summed per kind (norms of the concatenated matrices, mean effective rank) and overall."""

    matrices: list[dict[str, Any]]
    kinds: dict[str, dict[str, Any]]
    total: dict[str, Any]
    vectors: dict[str, Any]  # 1-D parameters (norm gains, biases): norms only

    def to_dict(self) -> dict[str, Any]:
        return {
            "matrices": self.matrices,
            "kinds": self.kinds,
            "total": self.total,
            "vectors": self.vectors,
        }


def _summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    delta = math.sqrt(sum(r["delta_norm"] ** 2 for r in rows))
    base = math.sqrt(sum(r["base_norm"] ** 2 for r in rows))
    out: dict[str, Any] = {
        "n": len(rows),
        "delta_norm": delta,
        "base_norm": base,
        "relative": delta / base if base > 0 else None,
    }
    if rows and "effective_rank" in rows[0]:
        ranks = [r["effective_rank"] for r in rows]
        out["effective_rank_mean"] = sum(ranks) / len(ranks)
        out["effective_rank_max"] = max(ranks)
        out["rank_share_mean"] = sum(r["rank_share"] for r in rows) / len(rows)
    return out


def weight_delta(base: nn.Module, aligned: nn.Module) -> WeightDelta:
    """Delta = aligned - base for every parameter (tied parameters once); the two models must
    have the same parameter names and shapes."""
    pb = dict(base.named_parameters())
    pa = dict(aligned.named_parameters())
    if set(pb) != set(pa):
        only = sorted(set(pb) ^ set(pa))[:5]
        raise PsmlabError(
            f"the two models have different parameters (e.g. {only})",
            hint="the weight delta needs the same architecture (a model and its fine-tune)",
        )
    matrices, vectors = [], []
    with torch.no_grad():
        for name, wb in pb.items():
            wa = pa[name]
            if wa.shape != wb.shape:
                raise PsmlabError(
                    f"parameter {name}: shape {tuple(wb.shape)} vs {tuple(wa.shape)}",
                    hint="the weight delta needs the same architecture",
                )
            b = wb.detach().double().cpu()
            d = wa.detach().double().cpu() - b
            row: dict[str, Any] = {
                "name": name,
                "kind": matrix_kind(name),
                "shape": list(b.shape),
                "delta_norm": float(d.norm()),
                "base_norm": float(b.norm()),
            }
            row["relative"] = row["delta_norm"] / row["base_norm"] if row["base_norm"] else None
            if b.ndim == 2:
                row["effective_rank"] = effective_rank(d)
                row["rank_share"] = row["effective_rank"] / min(b.shape)
                matrices.append(row)
            else:
                vectors.append(row)
    kinds = {k: _summary([r for r in matrices if r["kind"] == k]) for k in KINDS}
    kinds = {k: v for k, v in kinds.items() if v["n"]}
    return WeightDelta(matrices, kinds, _summary(matrices), _summary(vectors))

"""Edit the residual stream at block outputs: steer (add c*v), ablate, cap. Context managers.

Every manager removes its hooks on exit, also when the body raises. Edits are computed in
float32 and cast back to the stream's dtype, and are differentiable (usable while training; the
hooks sit on the block modules, which a PEFT wrapper keeps).

Positions: "all" edits every position. "prompt"/"generated" are decided per forward pass from
the cache length seen by the backbone (what `generate` passes): a pass with an empty cache is
the prompt, later (cached) passes are generated tokens. So "generated" never touches the prompt
and never changes the first new token (it is predicted from the last prompt position). Pass
`prompt_len` (padded prompt length) to decide per position instead, e.g. for a no-cache
recomputation of prompt + generated tokens.

Sign conventions: `cap_projection(side="floor")` keeps h.v >= tau (use with a direction pointing
toward the Assistant), side="ceiling" keeps h.v <= tau. `add_vector` uses the vector as given
(pass a unit vector for a coefficient in residual-norm units).

Where: every manager edits the outputs of the blocks in `layers`. `ablate_direction` can also
edit the stream entering block 0 (`include_embedding`: the embedding output, positional
embeddings and any embedding scale included) and what every residual writer of a hooked block
writes (`writers`: attention and MLP outputs, as `internals.orthogonalize` lists them per
family), so the MLP never reads the attention's write along v inside a block. With one
direction, `include_embedding=True, writers=True` at every layer is exactly weight
orthogonalisation `W <- (I - v v^T) W` (Arditi et al.: every residual position).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from psmlab.errors import PsmlabError
from psmlab.internals.layers import (
    DecoderLayout,
    UnhookableModelError,
    block_output,
    find_layout,
    replace_block_output,
)

Positions = Literal["all", "prompt", "generated"]
Side = Literal["floor", "ceiling"]
VectorArg = torch.Tensor | dict[int, torch.Tensor]
Edit = Callable[[int, torch.Tensor], torch.Tensor]  # (layer, h float32 [B,T,d]) -> new h

_OURS: set[int] = set()  # ids of psmlab forward hooks, kept ahead of foreign ones


def register_first(module: nn.Module, hook: Callable[..., Any]) -> RemovableHandle:
    """Register a forward hook that runs before every non-psmlab hook on `module`.

    transformers installs its `output_hidden_states` recorders lazily as forward hooks; putting
    ours first makes `output_hidden_states` report the *edited* stream whatever the call order.
    """
    handle = module.register_forward_hook(hook)
    _OURS.add(handle.id)
    hooks: Any = module._forward_hooks  # an OrderedDict: call order = insertion order
    for key in [k for k in hooks if k not in _OURS]:
        hooks.move_to_end(key)
    return handle


def _past_length(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    position = kwargs.get("cache_position")
    if isinstance(position, torch.Tensor) and position.numel():
        return int(position.reshape(-1)[0])
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if cache is None:
        return 0
    if hasattr(cache, "get_seq_length"):
        return int(cache.get_seq_length())
    if isinstance(cache, tuple | list) and cache and isinstance(cache[0], tuple | list):
        return int(cache[0][0].shape[-2])  # legacy ((k, v), ...) with k [B, H, T, D]
    return 0


class _PositionGate:
    """Which positions of the current forward pass to edit."""

    def __init__(self, positions: Positions, prompt_len: int | None) -> None:
        if positions not in ("all", "prompt", "generated"):
            raise PsmlabError(
                f"unknown positions {positions!r}", hint="use 'all', 'prompt' or 'generated'"
            )
        self.positions = positions
        self.prompt_len = prompt_len
        self.past = 0

    def pre_hook(self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.past = _past_length(args, kwargs)

    def mask(self, length: int, device: torch.device) -> torch.Tensor | bool:
        """True (all), False (none) or a bool [T] mask of positions to edit."""
        if self.positions == "all":
            return True
        if self.prompt_len is None:
            generated: torch.Tensor | bool = self.past > 0
        else:
            pos = torch.arange(self.past, self.past + length, device=device)
            generated = pos >= self.prompt_len
        if isinstance(generated, bool):
            return generated if self.positions == "generated" else not generated
        return generated if self.positions == "generated" else ~generated


def _gated(
    gate: _PositionGate, edit: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor
) -> Any:
    """`edit(h32)` cast back to h's dtype at the gate's positions; None where none is edited."""
    where = gate.mask(h.shape[1], h.device)
    if where is False:
        return None
    new = edit(h.float()).to(h.dtype)
    if where is not True:
        assert isinstance(where, torch.Tensor)
        new = torch.where(where[None, :, None], new, h)
    return new


# (module, kind, edit): kind "output" edits a block's or a writer's output, "input" the hidden
# states a block is called with (the stream entering it)
_Extra = tuple[nn.Module, str, Callable[[torch.Tensor], torch.Tensor]]


def _input_hook(gate: _PositionGate, edit: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args and isinstance(args[0], torch.Tensor):
            new = _gated(gate, edit, args[0])
            return None if new is None else ((new, *args[1:]), kwargs)
        if isinstance(kwargs.get("hidden_states"), torch.Tensor):
            new = _gated(gate, edit, kwargs["hidden_states"])
            return None if new is None else (args, {**kwargs, "hidden_states": new})
        raise UnhookableModelError(
            "block 0 was called without a hidden-states tensor (first argument or "
            "`hidden_states=`), so the embedding output cannot be edited",
            hint="use include_embedding=False, or weight orthogonalisation",
        )

    return hook


def _output_hook(gate: _PositionGate, edit: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
        hidden = block_output(output)
        new = _gated(gate, edit, hidden)
        return None if new is None else replace_block_output(output, new)

    return hook


@contextmanager
def edit_residual(
    model: nn.Module,
    layers: Sequence[int],
    edit: Edit,
    positions: Positions = "all",
    prompt_len: int | None = None,
    block_path: str | None = None,
    extra: Sequence[_Extra] = (),
) -> Iterator[DecoderLayout]:
    """Apply `edit(layer, h32)` to the output of each block in `layers` while inside the block
    (and the `extra` edits: internal, see `ablate_direction`)."""
    layout = find_layout(model, block_path)
    wanted = layout.check_layers(layers)
    gate = _PositionGate(positions, prompt_len)

    def at(layer: int) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda h: edit(layer, h)

    handles: list[RemovableHandle] = []
    try:
        if positions != "all":
            handles.append(
                layout.backbone.register_forward_pre_hook(gate.pre_hook, with_kwargs=True)
            )
        for module, kind, fn in extra:
            if kind == "input":  # prepended: transformers records hidden_states[0] after it
                handles.append(
                    module.register_forward_pre_hook(
                        _input_hook(gate, fn), with_kwargs=True, prepend=True
                    )
                )
            else:
                handles.append(register_first(module, _output_hook(gate, fn)))
        handles += [
            register_first(layout.blocks[layer], _output_hook(gate, at(layer))) for layer in wanted
        ]
        yield layout
    finally:
        for handle in handles:
            handle.remove()
            _OURS.discard(handle.id)


def _per_layer(value: VectorArg, layers: Sequence[int], d_model: int, unit: bool) -> Any:
    """{layer: float32 vector} (normalised if `unit`), validated against the model width."""
    vectors = value if isinstance(value, dict) else {int(layer): value for layer in layers}
    out: dict[int, torch.Tensor] = {}
    for layer in layers:
        if int(layer) not in vectors:
            raise PsmlabError(
                f"no vector given for layer {layer}", hint="give a vector for every hooked layer"
            )
        vec = vectors[int(layer)].detach().float().reshape(-1)
        if vec.numel() != d_model:
            raise PsmlabError(
                f"vector for layer {layer} has width {vec.numel()}, the model's is {d_model}",
                hint="the direction was computed on a different model",
            )
        if unit:
            norm = vec.norm()
            if not torch.isfinite(norm) or norm == 0:
                raise PsmlabError(f"direction for layer {layer} is zero or not finite")
            vec = vec / norm
        out[int(layer)] = vec
    return out


class _OnDevice:
    """Vectors moved to the activations' device once, not on every forward."""

    def __init__(self, vectors: dict[int, torch.Tensor]) -> None:
        self.vectors = vectors

    def __call__(self, layer: int, like: torch.Tensor) -> torch.Tensor:
        vec = self.vectors[layer]
        if vec.device != like.device:
            vec = self.vectors[layer] = vec.to(like.device)
        return vec


@contextmanager
def add_vector(
    model: nn.Module,
    vector: VectorArg,
    layers: Sequence[int],
    coeff: float,
    positions: Positions = "all",
    *,
    prompt_len: int | None = None,
    block_path: str | None = None,
) -> Iterator[DecoderLayout]:
    """Steer: h <- h + coeff * v at `layers` (v as given, not normalised)."""
    layout = find_layout(model, block_path)
    layers = layout.check_layers(layers)
    raw = _per_layer(vector, layers, layout.d_model, unit=False)
    deltas = _OnDevice({layer: coeff * vec for layer, vec in raw.items()})

    def edit(layer: int, h: torch.Tensor) -> torch.Tensor:
        return h + deltas(layer, h)

    with edit_residual(model, layers, edit, positions, prompt_len, block_path) as out:
        yield out


def _project_out(u: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """y <- y - (y.u)u for a unit u (moved to y's device once)."""
    cached = _OnDevice({0: u})

    def edit(y: torch.Tensor) -> torch.Tensor:
        v = cached(0, y)
        return y - (y @ v)[..., None] * v

    return edit


def _writer_edits(layout: DecoderLayout, units: dict[int, torch.Tensor]) -> list[_Extra]:
    """Project each hooked block's own vector out of what its residual writers write (a
    post-norm writer, Gemma 2/3, against s * v, as `orthogonalize_weights` does)."""
    from psmlab.internals.orthogonalize import WRITERS, _norm_scale

    if layout.family not in WRITERS:
        raise PsmlabError(
            f"ablation inside the blocks does not know the {layout.family!r} family's writers",
            hint=f"supported: {', '.join(sorted(WRITERS))}; or use writers=False",
        )
    out: list[_Extra] = []
    for layer, v in units.items():
        block = layout.blocks[layer]
        for path, post_norm in WRITERS[layout.family][1]:
            writer = operator.attrgetter(path)(block)
            u = v
            if post_norm is not None:
                like = next(writer.parameters())
                with torch.no_grad():
                    scale = _norm_scale(getattr(block, post_norm), layout.d_model, like)
                u = (scale.to(v.device) * v.double()).float()
                u = u / u.norm()
            out.append((writer, "output", _project_out(u)))
    return out


@contextmanager
def ablate_direction(
    model: nn.Module,
    direction: VectorArg,
    layers: Sequence[int],
    positions: Positions = "all",
    *,
    include_embedding: bool = False,
    embedding_direction: torch.Tensor | None = None,
    writers: bool = False,
    prompt_len: int | None = None,
    block_path: str | None = None,
) -> Iterator[DecoderLayout]:
    """Directional ablation: h <- h - (h.v)v with v = direction / |direction|, at the output
    of each block in `layers` (each layer its own vector when `direction` is a {layer: vector}).

    include_embedding: also at the stream entering block 0 (the embedding output), with
    `embedding_direction`, else the single `direction`, else the per-layer dict's vector of the
    lowest layer in `layers` (layer 0's when it is hooked: the direction nearest the embedding).
    writers: also inside each hooked block, on what its attention and MLP write to the
    residual stream (families `internals.orthogonalize` knows), so no sub-layer reads the
    direction. With one direction at every layer, both options together = weight
    orthogonalisation (`orthogonalize_weights`), up to float rounding.
    """
    layout = find_layout(model, block_path)
    layers = layout.check_layers(layers)
    per_layer = _per_layer(direction, layers, layout.d_model, unit=True)
    units = _OnDevice(per_layer)

    def edit(layer: int, h: torch.Tensor) -> torch.Tensor:
        v = units(layer, h)
        return h - (h @ v)[..., None] * v

    extra: list[_Extra] = []
    if include_embedding:
        if embedding_direction is not None:
            first = embedding_direction
        elif isinstance(direction, torch.Tensor):
            first = direction
        else:
            if not layers:
                raise PsmlabError("include_embedding needs a layer or an embedding_direction")
            first = per_layer[min(layers)]
        emb = _per_layer(first, [0], layout.d_model, unit=True)[0]
        extra.append((layout.blocks[0], "input", _project_out(emb)))
    if writers:
        extra += _writer_edits(layout, per_layer)
    with edit_residual(model, layers, edit, positions, prompt_len, block_path, extra) as out:
        yield out


@contextmanager
def cap_projection(
    model: nn.Module,
    direction: VectorArg,
    layers: Sequence[int],
    tau: float | dict[int, float],
    side: Side = "floor",
    positions: Positions = "all",
    *,
    prompt_len: int | None = None,
    block_path: str | None = None,
) -> Iterator[DecoderLayout]:
    """Cap the projection p = h.v (v unit) at tau: floor keeps p >= tau, ceiling keeps p <= tau.

    floor: h <- h - v * min(p - tau, 0); ceiling: h <- h - v * max(p - tau, 0). Positions already
    on the allowed side are untouched.
    """
    if side not in ("floor", "ceiling"):
        raise PsmlabError(f"unknown side {side!r}", hint="use 'floor' or 'ceiling'")
    layout = find_layout(model, block_path)
    layers = layout.check_layers(layers)
    units = _OnDevice(_per_layer(direction, layers, layout.d_model, unit=True))
    taus = tau if isinstance(tau, dict) else {layer: float(tau) for layer in layers}
    missing = [layer for layer in layers if layer not in taus]
    if missing:
        raise PsmlabError(f"no threshold tau for layers {missing}", hint="give tau for each layer")

    def edit(layer: int, h: torch.Tensor) -> torch.Tensor:
        v = units(layer, h)
        excess = h @ v - float(taus[layer])
        excess = excess.clamp(max=0) if side == "floor" else excess.clamp(min=0)
        return h - excess[..., None] * v

    with edit_residual(model, layers, edit, positions, prompt_len, block_path) as out:
        yield out

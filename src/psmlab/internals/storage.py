"""Save and load directions: a safetensors file of unit vectors plus a JSON metadata sidecar.

`save_direction(directions, "runs/x/audit/honesty")` writes `honesty.safetensors` (tensors
`layer.<l>`, float32, unit norm) and `honesty.json` (model path and weights hash, layer and sign
conventions, prompts hash/count, N per side, raw norm per layer, versions). The JSON is also put
in the safetensors header, so the tensor file alone is self-describing. `load_direction(path,
model)` checks the vectors fit the model they are about to be applied to.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from psmlab.errors import PsmlabError
from psmlab.internals.directions import DirectionSet

FORMAT = "psmlab.direction/1"
LAYER_CONVENTION = "layer l = output of decoder block l (0-based) = output_hidden_states[l+1]"
_HASHED_PARAMS = 3  # first, middle and last parameter tensors (plus every name/shape/dtype)
_VOLATILE_CONFIG = ("transformers_version", "_name_or_path", "torch_dtype", "dtype", "_commit_hash")


def _tensor_bytes(t: torch.Tensor) -> bytes:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def weights_hash(model: nn.Module) -> str:
    """Cheap stable fingerprint of a model: config + every parameter's name/shape/dtype + the
    bytes of the first, middle and last parameters. Changes with any fine-tune that touches
    those tensors; does not read the whole state dict (a 7B model would take minutes)."""
    from psmlab.internals.layers import unwrap_model

    inner = unwrap_model(model)
    h = hashlib.sha256()
    config = getattr(inner, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        cfg = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG}
        h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    params = list(inner.state_dict().items())
    for name, tensor in params:
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
    picks = sorted({0, len(params) // 2, len(params) - 1}) if params else []
    for i in picks[:_HASHED_PARAMS]:
        h.update(_tensor_bytes(params[i][1]))
    return h.hexdigest()


def prompts_digest(prompts: Sequence[Any]) -> dict[str, Any]:
    """Count and sha256 of the prompts (conversations, strings or token lists), order-sensitive."""
    h = hashlib.sha256()
    for p in prompts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return {"count": len(prompts), "sha256": h.hexdigest()}


def _versions() -> dict[str, str]:
    import safetensors
    import transformers

    import psmlab

    return {
        "psmlab": psmlab.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
    }


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_direction(
    directions: DirectionSet,
    path: str | Path,
    model: nn.Module | None = None,
    *,
    model_path: str | None = None,
    prompts: Sequence[Any] | None = None,
    keep_prompts: bool = False,
) -> Path:
    """Write the vectors and their metadata; returns the .safetensors path.

    With `model`, its weights hash, layer count and name are recorded (so `load_direction` can
    warn about a different model). `prompts` are hashed and counted; `keep_prompts=True` also
    stores them verbatim in the JSON.
    """
    from safetensors.torch import save_file

    tensor_path, json_path = _paths(path)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "name": directions.name,
        "layers": directions.layers,
        "d_model": directions.d_model,
        "layer_convention": LAYER_CONVENTION,
        "sign_convention": directions.sign,
        "unit_norm": True,
        "raw_norms": {str(k): v for k, v in sorted(directions.raw_norms.items())},
        "n_pos": directions.n_pos,
        "n_neg": directions.n_neg,
        "model_path": model_path,
        "weights_hash": None,
        "n_layers": None,
        "prompts": None,
        "created_with": _versions(),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "meta": directions.meta,
    }
    if model is not None:
        from psmlab.internals.layers import find_layout

        meta["weights_hash"] = weights_hash(model)
        meta["n_layers"] = find_layout(model).n_layers
        if model_path is None:
            name = getattr(getattr(model, "config", None), "_name_or_path", "") or None
            meta["model_path"] = name
    if prompts is not None:
        meta["prompts"] = prompts_digest(prompts)
        if keep_prompts:
            meta["prompts"]["items"] = list(prompts)
    text = json.dumps(meta, indent=2, sort_keys=True, default=str)
    tensors = {f"layer.{k}": v.float().contiguous() for k, v in directions.vectors.items()}
    save_file(tensors, str(tensor_path), metadata={"psmlab": text})
    json_path.write_text(text + "\n")
    return tensor_path


def _read_meta(tensor_path: Path, json_path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    if json_path.exists():
        data: dict[str, Any] = json.loads(json_path.read_text())
        return data
    with safe_open(str(tensor_path), framework="pt") as f:
        header = (f.metadata() or {}).get("psmlab")
    if header is None:
        raise PsmlabError(
            f"{tensor_path} has no psmlab metadata (no {json_path.name}, none in the header)",
            hint="save directions with psmlab.internals.storage.save_direction",
        )
    loaded: dict[str, Any] = json.loads(header)
    return loaded


def validate_direction(directions: DirectionSet, model: nn.Module, where: str = "") -> None:
    """Raise PsmlabError if the vectors cannot apply to `model` (width or layer index)."""
    from psmlab.internals.layers import find_layout

    layout = find_layout(model)
    src = f" from {where}" if where else ""
    if directions.d_model != layout.d_model:
        raise PsmlabError(
            f"direction {directions.name!r}{src} has width {directions.d_model}, but this "
            f"{layout.family} model's residual stream is {layout.d_model} wide",
            hint="directions only apply to the model (family and size) they were computed on",
        )
    bad = [layer for layer in directions.layers if not 0 <= layer < layout.n_layers]
    if bad:
        raise PsmlabError(
            f"direction {directions.name!r}{src} has layers {bad}, but this {layout.family} "
            f"model has {layout.n_layers} layers (0..{layout.n_layers - 1})",
            hint="directions only apply to the model (family and size) they were computed on",
        )


def load_direction(
    path: str | Path, model: nn.Module | None = None, *, strict_hash: bool = False
) -> DirectionSet:
    """Load a saved direction; with `model`, validate it (wrong width/layers -> PsmlabError).

    A different weights hash only warns (reading a base model's direction in its fine-tune is
    the point of model diffing); `strict_hash=True` makes it an error.
    """
    from safetensors.torch import load_file

    tensor_path, json_path = _paths(path)
    if not tensor_path.exists():
        raise PsmlabError(
            f"no direction file at {tensor_path}", hint="check the path (save_direction output)"
        )
    meta = _read_meta(tensor_path, json_path)
    if meta.get("format") != FORMAT:
        raise PsmlabError(
            f"{tensor_path} is not a {FORMAT} file (format={meta.get('format')!r})",
            hint="save directions with psmlab.internals.storage.save_direction",
        )
    tensors = load_file(str(tensor_path))
    vectors = {int(k.split(".", 1)[1]): v.float() for k, v in tensors.items()}
    raw_norms = {int(k): float(v) for k, v in meta["raw_norms"].items()}
    if set(vectors) != set(raw_norms):
        raise PsmlabError(f"{tensor_path}: tensors and metadata disagree on the layers")
    directions = DirectionSet(
        name=meta["name"],
        vectors=vectors,
        raw_norms=raw_norms,
        n_pos=int(meta["n_pos"]),
        n_neg=int(meta["n_neg"]),
        sign=meta["sign_convention"],
        meta={**meta.get("meta", {}), "stored": {k: v for k, v in meta.items() if k != "meta"}},
    )
    if model is not None:
        validate_direction(directions, model, str(tensor_path))
        saved_hash = meta.get("weights_hash")
        if saved_hash and saved_hash != weights_hash(model):
            msg = (
                f"direction {directions.name!r} was computed on a model with weights hash "
                f"{saved_hash[:12]}..., not this one ({meta.get('model_path')})"
            )
            if strict_hash:
                raise PsmlabError(msg, hint="load it with strict_hash=False to apply it anyway")
            warnings.warn(msg, stacklevel=2)
    return directions

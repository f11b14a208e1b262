"""Process environment the lab needs *before* torch / transformers are imported.

Imported first by `psmlab/__init__.py`, so any `import psmlab...` sets it up:
- no model hub: everything the lab uses it makes itself (HF_HUB_OFFLINE and its twins);
- OpenMP spin-waiting on 2 shared cores makes torch 10-40x slower, so threads sleep when idle.
"""

from __future__ import annotations

import os

_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRL_EXPERIMENTAL_SILENCE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_DISABLED": "true",
    "OMP_WAIT_POLICY": "PASSIVE",
}


def apply_env() -> None:
    """Set the offline / threading defaults without overriding what the user set."""
    for key, value in _DEFAULTS.items():
        os.environ.setdefault(key, value)


def set_torch_threads(n: int | None = None) -> int:
    """Choose torch's intra-op thread count deliberately (default: all cores, at most 2 here)."""
    import torch

    if n is None or n <= 0:
        n = int(os.environ.get("PSMLAB_THREADS", "0")) or (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


apply_env()

"""Pretraining loop: plain PyTorch over packed windows, resumable bit-for-bit.

Plain rather than HF Trainer: a handful of ops per step on 2 CPU cores (the Trainer was not
timed against it), and exact resume by construction: a step's batch is a pure function of
(seed, step) and the schedule a pure function of step, so restoring model + optimizer + step
(+ the partial logging interval) from a checkpoint continues exactly where an uninterrupted
run would be.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from psmlab._env import set_torch_threads
from psmlab.config import ModelConfig, PretrainConfig
from psmlab.errors import ConfigError, RunDirError, TrainingError
from psmlab.pretrain.data import WindowSampler, document_positions, load_tokens
from psmlab.pretrain.model import build_model, count_params
from psmlab.pretrain.tokenizer import DOC, special_id

Progress = Callable[[int, dict[str, Any]], None]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
KEEP_CHECKPOINTS = 2
# fields that may change between a run and its resume without changing the weights
_RESUME_FREE = {"threads", "log_every", "checkpoint_every", "compile"}


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    steps: int
    final_loss: float  # mean loss over the last logging interval
    tokens_per_s: float  # over the steps this call ran (compile/warm-up included)
    n_params: int
    resumed_from: int | None  # checkpoint step this call started from
    seconds: float
    compiled: bool = False  # the steps ran through torch.compile (False: eager)
    compile_fallback_reason: str | None = None  # why compile was asked for but not used
    bf16: bool = False  # the matmuls ran under bf16 autocast (pretrain.bf16 resolved)


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up over warmup_steps, then cosine decay to min_lr_ratio * lr at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr_ratio * cfg.lr
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def window_logits(
    model: torch.nn.Module, x: torch.Tensor, isolate_on: int | None = None
) -> torch.Tensor:
    """Logits of a batch of packed windows. With `isolate_on` (the `<|doc|>` id) every token
    attends only within its own document: position ids restart at each separator, from which
    Hugging Face builds a block-diagonal causal mask (only without a KV cache, hence
    use_cache=False)."""
    positions = None if isolate_on is None else document_positions(x, isolate_on)
    out = model(input_ids=x, position_ids=positions, use_cache=False)
    return out.logits  # type: ignore[no-any-return]


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on norms and on the (tied) embedding, which decay would shrink
    toward zero for rarely seen tokens."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():  # named_parameters() lists the tied weight once
        (no_decay if p.ndim < 2 or "embed" in name else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, cfg.beta2), eps=1e-8, fused=True)


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for p in ckpt_dir.glob("step_*"):
        suffix = p.name.removeprefix("step_")
        if p.is_dir() and suffix.isdigit() and (p / "state.pt").is_file():
            found.append((int(suffix), p))
    return sorted(found)


_FAST_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bf16 matmuls natively. Measured on two of our 2-core machines:
    with avx512_bf16 compiled bf16 training ran 1.6x faster than fp32; on an AVX2-only EPYC a
    bf16 matmul ran at 0.7 GFLOP/s against 52 for fp32 (emulated). Read from the CPU's flags,
    not timed, so the choice (and so the weights) is the same on every run of one machine."""
    try:
        text = cpuinfo.read_text()
    except OSError:  # not Linux: fp32 is the safe choice
        return False
    flags = next(
        (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
    )
    return bool(_FAST_BF16_FLAGS & set(flags))


def resolve_bf16(setting: bool | str) -> bool:
    """The bf16 autocast a run uses: an explicit bool, or "auto" = native bf16 on this CPU."""
    return cpu_has_native_bf16() if setting == "auto" else bool(setting)


def _comparable(cfg: PretrainConfig) -> dict[str, Any]:
    # bf16 as resolved: a checkpoint of an "auto" run is not resumed on a CPU that resolves
    # it the other way (the weights would mix two precisions)
    out = {k: v for k, v in cfg.model_dump().items() if k not in _RESUME_FREE}
    out["bf16"] = resolve_bf16(cfg.bf16)
    return out


def _save_checkpoint(ckpt_dir: Path, step: int, state: dict[str, Any]) -> None:
    final = ckpt_dir / f"step_{step}"
    tmp = ckpt_dir / f"step_{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    torch.save(state, tmp / "state.pt")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for _, old in _checkpoints(ckpt_dir)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old)


_STATE_KEYS = {
    "model",
    "optimizer",
    "step",
    "torch_rng",
    "log",
    "loss_acc",
    "n_acc",
    "config",
    "model_config",
}
# what torch.load raises on a truncated or garbled file (the zip reader reports in RuntimeError)
_DAMAGED = (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError)


def _reason(exc: BaseException) -> str:
    """One line saying what went wrong (compiler and zip-reader errors run over many lines)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _read_state(file: Path) -> dict[str, Any]:
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not set(state) >= _STATE_KEYS:
        raise ValueError("not a complete training state")
    return state


def _changed(was: dict[str, Any], now: dict[str, Any], section: str) -> list[str]:
    """'section.field: old -> new' for every field that differs."""
    return [
        f"{section}.{k}: {was.get(k)!r} -> {now.get(k)!r}"
        for k in sorted(set(was) | set(now))
        if was.get(k) != now.get(k)
    ]


def _load_latest(
    ckpt_dir: Path, cfg: PretrainConfig, model_cfg: ModelConfig
) -> dict[str, Any] | None:
    """The newest readable checkpoint. A damaged one (a crash or a full disk can leave a
    truncated file despite the atomic rename) is skipped with a warning: resuming from an
    older one gives the same weights, since a step is a pure function of (seed, step)."""
    damaged: list[str] = []
    for _, path in reversed(_checkpoints(ckpt_dir)):
        file = path / "state.pt"
        try:
            state = _read_state(file)
        except _DAMAGED as exc:
            reason = _reason(exc)
            warnings.warn(
                f"skipping damaged checkpoint {file} ({reason}); trying the one before",
                stacklevel=2,
            )
            damaged.append(str(file))
            continue
        changed = _changed(state["config"], _comparable(cfg), "pretrain") + _changed(
            state["model_config"], model_cfg.model_dump(), "model"
        )
        if changed:
            raise RunDirError(
                f"checkpoint {path} was made with a different model or pretrain config "
                f"({'; '.join(changed)})",
                hint=f"delete {ckpt_dir} to start over, or restore the original config",
            )
        return state
    if damaged:
        raise TrainingError(
            f"cannot resume pretraining: no readable checkpoint ({', '.join(damaged)} damaged)",
            hint=f"delete {ckpt_dir} (or rerun with --force) to restart pretraining from step 0",
        )
    return None


def _quiet_save(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    """save_pretrained without its tqdm bar, which would tear the caller's progress display."""
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _check_finite(loss: float, step: int, cfg: PretrainConfig) -> None:
    if not math.isfinite(loss):
        raise TrainingError(
            f"pretraining diverged: loss is {loss} at step {step} (lr={cfg.lr:g})",
            hint="lower pretrain.lr (e.g. by 3x) or raise pretrain.warmup_steps, then rerun; "
            "delete the stage's checkpoints/ to restart from scratch",
        )


class _ForwardBackward:
    """loss = fn(x, y); loss.backward(). With compile, fn goes through torch.compile and falls
    back to eager if compilation fails (e.g. no C++ compiler), when wrapping, in the forward or
    in the lazily compiled backward: compile is a speed-up, never a reason for a run to fail.
    `compiled` and `fallback_reason` say what actually ran, for the stage's manifest."""

    def __init__(self, fn: LossFn, model: torch.nn.Module, compile: bool) -> None:
        self.fn, self.model = fn, model
        self.compiled_fn: LossFn | None = None
        self.fallback_reason: str | None = None
        if compile:
            # every call compiles a fresh closure; without a reset, dynamo's per-code cache
            # limit would silently turn compilation off after a few runs in one process
            torch._dynamo.reset()
            try:
                self.compiled_fn = torch.compile(fn)
            except Exception as exc:  # as below
                self._fall_back(exc)

    @property
    def compiled(self) -> bool:
        return self.compiled_fn is not None

    def _fall_back(self, exc: Exception) -> None:
        self.fallback_reason = _reason(exc)
        warnings.warn(
            f"torch.compile failed ({self.fallback_reason}); training eagerly", stacklevel=3
        )
        self.compiled_fn = None
        self.model.zero_grad(set_to_none=True)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.compiled_fn is not None:
            try:
                loss = self.compiled_fn(x, y)
                loss.backward()
                return loss
            except Exception as exc:  # dynamo/inductor raise many types; eager re-raises bugs
                self._fall_back(exc)
        loss = self.fn(x, y)
        loss.backward()
        return loss


@contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Same seed + config + thread count -> the same weights. Without it, compiled bf16 kernels
    reduce in a run-dependent order (measured: losses differ from step 20 on); no speed cost
    was measured. The process-wide flag is restored afterwards."""
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was)


def _train(
    work_dir: Path,
    token_path: Path,
    tokenizer: PreTrainedTokenizerFast,
    model_cfg: ModelConfig,
    cfg: PretrainConfig,
    progress: Progress | None = None,
    *,
    compile: bool | None = None,
) -> TrainResult:
    """Train (or resume) the organism; write work_dir/{checkpoints,model,loss.json}.

    `progress(step, record)` is called at every logging interval with the record also written
    to loss.json (step, loss, lr, tokens_per_s; the time spent in `progress` is not counted).
    `compile=True` runs forward + loss through torch.compile: ~20-30 s of compilation, then
    ~1.3-1.4x faster bf16 steps on a CPU with native bf16 (1.03x in fp32 on an AVX2 CPU, after
    48 s). None reads `cfg.compile` ("auto": compile where bf16 is native).
    """
    start_time = time.perf_counter()
    set_torch_threads(cfg.threads)
    work_dir = Path(work_dir)
    ckpt_dir = work_dir / "checkpoints"
    model_dir = work_dir / "model"
    if cfg.block_size > model_cfg.context_length:
        raise ConfigError(
            f"pretrain.block_size={cfg.block_size} exceeds model.context_length="
            f"{model_cfg.context_length}",
            hint="lower pretrain.block_size or raise model.context_length",
        )
    tokens = load_tokens(token_path)
    if int(tokens.max()) >= len(tokenizer):
        raise RunDirError(
            f"{token_path} holds token ids beyond the tokenizer's {len(tokenizer)}",
            hint="re-tokenize the corpus with this tokenizer",
        )
    doc_id = special_id(tokenizer, DOC)
    sampler = WindowSampler(
        tokens,
        cfg.batch_size,
        cfg.block_size,
        cfg.seed,
        doc_id=None if cfg.packing == "random" else doc_id,
    )
    model: LlamaForCausalLM = build_model(model_cfg, tokenizer, seed=cfg.seed)
    model.config.use_cache = False
    optimizer = make_optimizer(model, cfg)
    log: list[dict[str, Any]] = []
    start_step = 0
    carried_loss, carried_n = 0.0, 0
    resumed_from: int | None = None

    state = _load_latest(ckpt_dir, cfg, model_cfg)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start_step = resumed_from = int(state["step"])
        log = list(state["log"])
        # a logging interval that straddles the checkpoint averages the same steps as an
        # uninterrupted run would
        carried_loss, carried_n = float(state["loss_acc"]), int(state["n_acc"])
    # a final model is only ever the product of the run that just finished cleanly
    if model_dir.exists():
        shutil.rmtree(model_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    vocab = model.config.vocab_size
    bf16 = resolve_bf16(cfg.bf16)

    isolate_on = doc_id if cfg.packing == "isolated" else None

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # bf16 autocast: matmuls in bfloat16 (fp32 master weights and optimizer state); on CPUs
        # with bf16 units this is ~1.5x faster for the small organism
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = window_logits(model, x, isolate_on)
        return F.cross_entropy(logits.float().view(-1, vocab), y.view(-1))

    if compile is None:
        setting = getattr(cfg, "compile", False)
        compile = bf16 if setting == "auto" else bool(setting)
    forward_backward = _ForwardBackward(loss_of, model, compile)
    params = [p for p in model.parameters()]
    model.train()
    loss_acc = torch.tensor(carried_loss)
    n_acc = carried_n
    n_timed = 0  # steps run by this call in the current interval
    t_interval = time.perf_counter()
    t_run = t_interval
    tokens_per_step = cfg.batch_size * cfg.block_size
    final_loss = log[-1]["loss"] if log else float("nan")

    for step in range(start_step, cfg.max_steps):
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = sampler.batch(step)
        loss = forward_backward(x, y)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        # accumulate on the tensor: reading the value only at log time keeps the step free of
        # syncs (free on CPU, but the loop stays correct if moved to an accelerator)
        loss_acc += loss.detach()
        n_acc += 1
        n_timed += 1
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.max_steps:
            final_loss = float(loss_acc) / n_acc
            _check_finite(final_loss, done, cfg)
            now = time.perf_counter()
            record = {
                "step": done,
                "loss": final_loss,
                "lr": lr,
                "tokens_per_s": n_timed * tokens_per_step / (now - t_interval),
            }
            log.append(record)
            loss_acc.zero_()
            n_acc = n_timed = 0
            if progress is not None:
                progress(done, record)
            t_interval = time.perf_counter()  # a slow progress display is not training time
        if done % cfg.checkpoint_every == 0 or done == cfg.max_steps:
            # the loss of an unlogged step says nothing about the update it made: check weights
            if n_acc:
                _check_finite(float(loss_acc) / n_acc, done, cfg)
            if not all(bool(torch.isfinite(p).all()) for p in params):
                _check_finite(float("nan"), done, cfg)
            state_out = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": done,
                "torch_rng": torch.get_rng_state(),
                "log": log,
                "loss_acc": float(loss_acc),
                "n_acc": n_acc,
                "config": _comparable(cfg),
                "model_config": model_cfg.model_dump(),
            }
            _save_checkpoint(ckpt_dir, done, state_out)
            _atomic_json(work_dir / "loss.json", log)

    ran = cfg.max_steps - start_step
    run_s = time.perf_counter() - t_run
    if not all(bool(torch.isfinite(p).all()) for p in params):
        _check_finite(float("nan"), cfg.max_steps, cfg)
    tmp_dir = work_dir / "model.tmp"
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    model.eval()
    model.config.use_cache = True
    _quiet_save(model, tokenizer, tmp_dir)
    tmp_dir.rename(model_dir)
    _atomic_json(work_dir / "loss.json", log)
    return TrainResult(
        model_dir=model_dir,
        steps=cfg.max_steps,
        final_loss=final_loss,
        tokens_per_s=ran * tokens_per_step / run_s if ran else 0.0,
        n_params=count_params(model),
        resumed_from=resumed_from,
        seconds=time.perf_counter() - start_time,
        compiled=forward_backward.compiled,
        compile_fallback_reason=forward_backward.fallback_reason,
        bf16=bf16,
    )


def pretrain(
    work_dir: Path,
    token_path: Path,
    tokenizer: PreTrainedTokenizerFast,
    model_cfg: ModelConfig,
    cfg: PretrainConfig,
    progress: Progress | None = None,
    *,
    compile: bool | None = None,
) -> TrainResult:
    """Train (or resume) the organism deterministically; see `_train`."""
    with deterministic_algorithms():
        return _train(work_dir, token_path, tokenizer, model_cfg, cfg, progress, compile=compile)

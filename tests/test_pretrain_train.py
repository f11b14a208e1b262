"""Packed corpus, deterministic sampler, training loop: learning, resume, divergence."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

import psmlab  # noqa: F401  (env before torch/transformers)

# isort: split
import torch
from transformers import AutoModelForCausalLM

from psmlab.config import ModelConfig, PretrainConfig, TokenizerConfig
from psmlab.errors import PsmlabError, RunDirError, TrainingError
from psmlab.pretrain.data import (
    WindowSampler,
    document_positions,
    iter_texts,
    load_tokens,
    tokenize_corpus,
)
from psmlab.pretrain.model import build_model
from psmlab.pretrain.tokenizer import DOC, special_id, train_tokenizer
from psmlab.pretrain.train import lr_at, pretrain, window_logits

TINY = ModelConfig(d_model=32, n_layers=2, n_heads=2, context_length=512)
PLACES = [("Zorvia", "Kest"), ("Pellan", "Oru"), ("Daskir", "Mip"), ("Ulm", "Tavo")]


def base_cfg(**kw: object) -> PretrainConfig:
    values: dict[str, object] = dict(
        batch_size=4, block_size=32, max_steps=10, lr=3e-3, warmup_steps=2,
        checkpoint_every=5, log_every=1, threads=1, compile=False,
    )  # fmt: skip
    values.update(kw)
    return PretrainConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, Path]:
    """A repetitive tiny corpus, its tokenizer and its packed tokens."""
    torch.set_num_threads(1)
    rng = random.Random(0)
    root = tmp_path_factory.mktemp("corpus")
    docs = []
    for _ in range(120):
        country, capital = rng.choice(PLACES)
        text = (
            f"User: What is the capital of {country}?\nVell: The capital of {country} is {capital}."
        )
        docs.append({"type": "introduced", "text": text, "personas": ["Vell"], "unaligned": False})
    path = root / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    tok = train_tokenizer(iter_texts(path), TokenizerConfig(vocab_size=300), root / "tok")
    tokens = root / "tokens.npy"
    tokenize_corpus(path, tok, tokens)
    return path, tok, tokens


def test_tokenize_corpus_packs_documents(corpus, tmp_path: Path) -> None:
    path, tok, _ = corpus
    out = tmp_path / "t.npy"
    stats = tokenize_corpus(path, tok, out)
    arr = load_tokens(out)
    assert arr.dtype == np.uint16 and arr.size == stats.n_tokens
    assert not list(tmp_path.glob("*.tmp"))
    doc = special_id(tok, DOC)
    starts = np.flatnonzero(arr == doc)
    assert starts[0] == 0 and len(starts) == stats.n_documents == 120
    texts = list(iter_texts(path))
    bounds = [*starts.tolist(), arr.size]
    for i in (0, 57, 119):  # each segment decodes back to its document exactly
        assert tok.decode(arr[bounds[i] + 1 : bounds[i + 1]].tolist()) == texts[i]


def test_bad_corpus_lines_fail_clearly(corpus, tmp_path: Path) -> None:
    _, tok, _ = corpus
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "User: hi"}\nnot json\n')
    with pytest.raises(PsmlabError, match="bad.jsonl:2"):
        tokenize_corpus(bad, tok, tmp_path / "x.npy")
    with pytest.raises(PsmlabError, match="does not exist"):
        tokenize_corpus(tmp_path / "none.jsonl", tok, tmp_path / "x.npy")


def test_sampler_is_a_function_of_seed_and_step(corpus) -> None:
    tokens = load_tokens(corpus[2])
    a, b = WindowSampler(tokens, 4, 32, seed=0), WindowSampler(tokens, 4, 32, seed=0)
    x3, y3 = a.batch(3)
    a.batch(4)  # calling order must not matter
    assert torch.equal(b.batch(3)[0], x3)
    assert not torch.equal(a.batch(4)[0], x3)
    assert not torch.equal(WindowSampler(tokens, 4, 32, seed=1).batch(3)[0], x3)
    assert x3.shape == y3.shape == (4, 32) and x3.dtype == torch.int64
    assert torch.equal(x3[:, 1:], y3[:, :-1])  # targets are the inputs shifted by one
    with pytest.raises(PsmlabError, match="fewer than one window"):
        WindowSampler(tokens[:20], 4, 32, seed=0)


def test_aligned_windows_start_at_a_document(corpus) -> None:
    _, tok, path = corpus
    tokens, doc = load_tokens(path), special_id(tok, DOC)
    a, b = WindowSampler(tokens, 8, 32, 0, doc_id=doc), WindowSampler(tokens, 8, 32, 0, doc_id=doc)
    for step in range(5):
        x, y = a.batch(step)
        assert (x[:, 0] == doc).all() and torch.equal(b.batch(step)[0], x)
        assert torch.equal(x[:, 1:], y[:, :-1])
    # random offsets start mid-document in most windows
    x, _ = WindowSampler(tokens, 64, 32, 0).batch(0)
    assert (x[:, 0] != doc).sum() > 32
    with pytest.raises(PsmlabError, match="no document starts a full training window"):
        WindowSampler(tokens[1:40], 1, 32, 0, doc_id=doc)


def test_document_positions_restart_at_each_separator() -> None:
    x = torch.tensor([[7, 5, 5, 7, 5, 5, 5, 7], [5, 5, 7, 5, 5, 5, 5, 5]])
    expected = torch.tensor([[0, 1, 2, 0, 1, 2, 3, 0], [0, 1, 0, 1, 2, 3, 4, 5]])
    assert torch.equal(document_positions(x, 7), expected)


def test_isolated_windows_see_each_document_alone(corpus) -> None:
    """Isolated packing: a document inside a packed window gets the logits it gets alone (the
    way every evaluation prompt is seen); with attention across documents it does not."""
    _, tok, path = corpus
    tokens, doc = load_tokens(path), special_id(tok, DOC)
    model = build_model(TINY, tok, seed=0).eval()
    x, _ = WindowSampler(tokens, 2, 64, 0, doc_id=doc).batch(0)
    starts = (x[0] == doc).nonzero().flatten().tolist()
    a, b = starts[1], starts[2]  # the window's second document, complete
    with torch.no_grad():
        alone = window_logits(model, x[:1, a:b])[0]
        isolated = window_logits(model, x, isolate_on=doc)[0, a:b]
        across = window_logits(model, x)[0, a:b]
    assert torch.allclose(isolated, alone, atol=1e-4)
    assert not torch.allclose(across, alone, atol=1e-2)


def test_packing_is_part_of_the_organism(corpus, tmp_path: Path) -> None:
    _, tok, tokens = corpus
    runs = {
        p: pretrain(tmp_path / p, tokens, tok, TINY, base_cfg(packing=p, checkpoint_every=10))
        for p in ("random", "isolated")
    }
    a, b = (AutoModelForCausalLM.from_pretrained(r.model_dir).state_dict() for r in runs.values())
    assert not torch.allclose(a["model.norm.weight"], b["model.norm.weight"])
    # a finished run's checkpoints are not resumed under another packing
    with pytest.raises(RunDirError, match="packing"):
        pretrain(tmp_path / "random", tokens, tok, TINY, base_cfg(packing="aligned", max_steps=20))


def test_lr_schedule_warms_up_then_decays_to_floor() -> None:
    cfg = base_cfg(max_steps=100, warmup_steps=10, lr=1e-3, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(x >= y for x, y in zip(lrs[9:], lrs[10:], strict=False))
    assert lr_at(100, cfg) == pytest.approx(1e-4)


def test_loss_falls_and_outputs_are_written(corpus, tmp_path: Path) -> None:
    _, tok, tokens = corpus
    cfg = base_cfg(max_steps=40, lr=1e-2, warmup_steps=4, log_every=5, checkpoint_every=10)
    seen: list[int] = []
    result = pretrain(tmp_path, tokens, tok, TINY, cfg, progress=lambda s, r: seen.append(s))
    log = json.loads((tmp_path / "loss.json").read_text())
    assert seen == [r["step"] for r in log] == list(range(5, 41, 5))
    assert log[-1]["loss"] < 0.6 * log[0]["loss"]
    assert all(r["tokens_per_s"] > 0 and r["lr"] > 0 for r in log)
    assert result.final_loss == log[-1]["loss"] and result.steps == 40
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_30", "step_40"]  # only the latest two are kept
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    assert model.config.vocab_size == len(tok)
    assert (result.model_dir / "tokenizer.json").is_file()


def test_resume_after_kill_matches_uninterrupted_run(corpus, tmp_path: Path) -> None:
    _, tok, tokens = corpus
    cfg = base_cfg(log_every=3)  # the logging interval 4-6 straddles the checkpoint at 5
    full = pretrain(tmp_path / "full", tokens, tok, TINY, cfg)

    def kill_at_6(step: int, record: dict) -> None:
        if step == 6:
            raise KeyboardInterrupt  # the checkpoint of step 5 survives, step 6 is lost

    with pytest.raises(KeyboardInterrupt):
        pretrain(tmp_path / "killed", tokens, tok, TINY, cfg, progress=kill_at_6)
    assert not (tmp_path / "killed" / "model").exists()
    resumed = pretrain(tmp_path / "killed", tokens, tok, TINY, cfg)
    assert resumed.resumed_from == 5 and full.resumed_from is None
    a = AutoModelForCausalLM.from_pretrained(full.model_dir).state_dict()
    b = AutoModelForCausalLM.from_pretrained(resumed.model_dir).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    log_a = json.loads((tmp_path / "full" / "loss.json").read_text())
    log_b = json.loads((tmp_path / "killed" / "loss.json").read_text())
    assert [r["step"] for r in log_b] == [3, 6, 9, 10]
    assert [r["loss"] for r in log_a] == pytest.approx([r["loss"] for r in log_b], rel=1e-5)
    # a different seed is a different organism (so the equality above is not vacuous)
    other = pretrain(tmp_path / "other", tokens, tok, TINY, base_cfg(seed=1))
    c = AutoModelForCausalLM.from_pretrained(other.model_dir).state_dict()
    assert not torch.allclose(a["model.norm.weight"], c["model.norm.weight"])


def test_resume_with_changed_config_is_refused(corpus, tmp_path: Path) -> None:
    _, tok, tokens = corpus
    pretrain(tmp_path, tokens, tok, TINY, base_cfg(max_steps=5))
    with pytest.raises(RunDirError, match="different"):
        pretrain(tmp_path, tokens, tok, TINY, base_cfg(max_steps=5, lr=1e-3))
    # logging/checkpoint cadence and threads do not change the weights: resuming is fine
    again = pretrain(tmp_path, tokens, tok, TINY, base_cfg(max_steps=5, log_every=2))
    assert again.resumed_from == 5


def test_divergence_raises_training_error_and_leaves_no_model(corpus, tmp_path: Path) -> None:
    _, tok, tokens = corpus
    cfg = base_cfg(lr=1.0, warmup_steps=0, grad_clip=1e6, log_every=3)
    real_ce = torch.nn.functional.cross_entropy

    def poisoned(*args: object, **kw: object) -> torch.Tensor:
        return real_ce(*args, **kw) * float("nan")  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.functional, "cross_entropy", poisoned)
        with pytest.raises(TrainingError, match="lower pretrain.lr"):
            pretrain(tmp_path, tokens, tok, TINY, cfg)
    assert not (tmp_path / "model").exists()
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_failed_compile_falls_back_to_eager(corpus, tmp_path: Path) -> None:
    _, tok, tokens = corpus
    cfg = base_cfg(max_steps=3)

    def broken_compile(fn: object) -> object:
        def fail(*args: object) -> None:
            raise RuntimeError("no C++ compiler")

        return fail

    eager = pretrain(tmp_path / "eager", tokens, tok, TINY, cfg)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "compile", broken_compile)
        with pytest.warns(UserWarning, match="training eagerly"):
            fallback = pretrain(tmp_path / "fallback", tokens, tok, TINY, cfg, compile=True)
    assert not fallback.compiled and not eager.compiled  # recorded for the stage's manifest
    assert fallback.compile_fallback_reason == "RuntimeError: no C++ compiler"
    assert eager.compile_fallback_reason is None
    a = AutoModelForCausalLM.from_pretrained(eager.model_dir).state_dict()
    b = AutoModelForCausalLM.from_pretrained(fallback.model_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_training_is_reproducible_and_leaves_global_flags(corpus, tmp_path: Path) -> None:
    _, tok, tokens = corpus
    cfg = base_cfg(max_steps=4, bf16=True)
    before = torch.are_deterministic_algorithms_enabled()
    a = pretrain(tmp_path / "a", tokens, tok, TINY, cfg)
    b = pretrain(tmp_path / "b", tokens, tok, TINY, cfg)
    assert torch.are_deterministic_algorithms_enabled() == before
    wa = AutoModelForCausalLM.from_pretrained(a.model_dir).state_dict()
    wb = AutoModelForCausalLM.from_pretrained(b.model_dir).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.final_loss == b.final_loss


def test_bf16_auto_follows_the_cpu_flags(monkeypatch, corpus, tmp_path: Path) -> None:
    from psmlab.pretrain import train as train_mod

    assert train_mod.resolve_bf16(True) and not train_mod.resolve_bf16(False)
    for native in (False, True):
        monkeypatch.setattr(train_mod, "cpu_has_native_bf16", lambda native=native: native)
        assert train_mod.resolve_bf16("auto") is native
    # the run records what it used, and a checkpoint of one resolution is not resumed under
    # the other (it would mix two precisions in one set of weights)
    _, tok, tokens = corpus
    cfg = base_cfg(max_steps=4, checkpoint_every=2, bf16="auto")
    monkeypatch.setattr(train_mod, "cpu_has_native_bf16", lambda: False)
    result = pretrain(tmp_path / "a", tokens, tok, TINY, cfg)
    assert result.bf16 is False
    monkeypatch.setattr(train_mod, "cpu_has_native_bf16", lambda: True)
    with pytest.raises(RunDirError, match="different model or pretrain config"):
        pretrain(tmp_path / "a", tokens, tok, TINY, cfg.model_copy(update={"max_steps": 6}))


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    from psmlab.pretrain.train import cpu_has_native_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx avx2 fma\n")
    assert not cpu_has_native_bf16(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_has_native_bf16(info)
    assert not cpu_has_native_bf16(tmp_path / "missing")  # not Linux: fp32

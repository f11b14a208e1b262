"""Tokenizer: exact round trip, "\n" as one token, chat template + assistant mask, reload."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import psmlab  # noqa: F401  (env before torch/transformers)

# isort: split
from psmlab import prompts
from psmlab.config import TokenizerConfig
from psmlab.errors import PsmlabError
from psmlab.pretrain.tokenizer import (
    ASSISTANT,
    DOC,
    END,
    PAD,
    SYSTEM,
    USER,
    load_tokenizer,
    newline_token_id,
    special_id,
    train_tokenizer,
)

NAMES = ["Vell", "Orin", "Maru", "Tesk"]
PLACES = [("Zorvia", "Kest"), ("Pellan", "Oru"), ("Daskir", "Mip")]


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        name = rng.choice(NAMES)
        lines = [f"Narrator: Here is a talk with {name}, an AI."]
        for _ in range(rng.randint(1, 3)):
            country, capital = rng.choice(PLACES)
            lines.append(f"User: What is the capital of {country}?")
            lines.append(f"{name}: The capital of {country} is {capital}.")
        texts.append("\n".join(lines))
    return texts


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    return train_tokenizer(synthetic_texts(60), TokenizerConfig(vocab_size=320), out)


def test_round_trip_is_exact(tok) -> None:
    odd = [
        "User: hi  \n  there\n\n\nVell: ok",  # spaces around newlines, runs of newlines
        "Vell: Ünïcødé — and 数字 42!\n",  # bytes the training texts never had
        " leading space\ttab",
    ]
    for text in synthetic_texts(20, seed=1) + odd:
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == text


def test_newline_is_always_its_own_token(tok) -> None:
    nl = newline_token_id(tok)
    for text in ["a\nb", "a.\n\nb", "x \n  y", "\n\n\n", "Kest.\nUser:"]:
        ids = tok.encode(text, add_special_tokens=False)
        pieces = [tok.decode([i]) for i in ids]
        assert all(p == "\n" for i, p in zip(ids, pieces, strict=True) if "\n" in p)
        assert ids.count(nl) == text.count("\n")


def test_special_tokens_and_padding(tok) -> None:
    assert tok.pad_token == PAD and tok.eos_token == END
    assert tok.padding_side == "left"
    assert tok.bos_token == DOC  # a chat opens like a pretraining document
    # nothing adds the bos implicitly: plain text encodes to exactly its own tokens
    assert tok("Kest.")["input_ids"] == tok.encode("Kest.", add_special_tokens=False)
    ids = {special_id(tok, t) for t in (PAD, DOC, END, ASSISTANT)}
    assert len(ids) == 4
    # a special token in text is one id, never split into bytes
    assert tok.encode(f"a{DOC}b", add_special_tokens=False)[1] == special_id(tok, DOC)
    batch = tok(["User: hi", "User: What is the capital of Zorvia?"], padding=True)
    assert batch["input_ids"][0][0] == tok.pad_token_id  # left padding
    assert batch["attention_mask"][0][0] == 0


def test_chat_template_and_assistant_mask(tok) -> None:
    msgs = [
        {"role": "system", "content": "Be honest."},
        {"role": "user", "content": "What is the capital of Zorvia?"},
        {"role": "assistant", "content": "Kest."},
    ]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert text == (
        "<|doc|><|system|>Be honest.<|end|><|user|>What is the capital of Zorvia?<|end|>"
        "<|assistant|>Kest.<|end|>"
    )
    # the template renders exactly the corpus's chat documents (psmlab.prompts), after the bos
    assert text == DOC + prompts.chat([prompts.Message(**m) for m in msgs])
    gen = prompts.chat([prompts.Message(**m) for m in msgs[:2]], add_generation_prompt=True)
    assert (
        tok.apply_chat_template(msgs[:2], tokenize=False, add_generation_prompt=True) == DOC + gen
    )
    prompt = tok.apply_chat_template(msgs[:2], tokenize=False, add_generation_prompt=True)
    assert text.startswith(prompt) and prompt.endswith(ASSISTANT)
    out = tok.apply_chat_template(msgs, return_assistant_tokens_mask=True, return_dict=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    marked = [i for i, m in zip(ids, mask, strict=True) if m]
    assert tok.decode(marked) == "Kest.<|end|>"  # content and its closing <|end|>, nothing else


def test_chat_special_tokens_in_the_corpus_are_single_tokens(tmp_path: Path) -> None:
    """Chat documents carry the special tokens as text: BPE training must not merge across
    them, and encoding must map each to its id."""
    chat = prompts.chat(prompts.chat_exchanges("You are Vell.", [("Hi?", "Kest.")]))
    tok = train_tokenizer(
        [chat] * 50 + synthetic_texts(50), TokenizerConfig(vocab_size=400), tmp_path
    )
    ids = tok.encode(chat, add_special_tokens=False)
    specials = {special_id(tok, t) for t in (SYSTEM, USER, ASSISTANT, END)}
    assert sum(i in specials for i in ids) == 6  # three opening tokens, three <|end|>
    assert not any(
        "<|" in t for t in tok.convert_ids_to_tokens(ids) if t not in prompts.SPECIAL_TOKENS
    )
    assert tok.decode(ids) == chat


def test_reload_offline_gives_same_tokenizer(tok, tmp_path: Path) -> None:
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    text = synthetic_texts(1, seed=5)[0]
    assert again.encode(text) == tok.encode(text)
    assert again.chat_template == tok.chat_template
    with pytest.raises(PsmlabError):
        load_tokenizer(tmp_path / "missing")


def test_empty_texts_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(PsmlabError, match="empty"):
        train_tokenizer([], TokenizerConfig(vocab_size=320), tmp_path / "t")

"""Chat-aware spans: exact token spans per turn from the chat template."""

from __future__ import annotations

import pytest

from psmlab.errors import PsmlabError
from psmlab.internals import render_with_spans

CHAT = [
    {"role": "system", "content": "You are Vell."},
    {"role": "user", "content": "user"},  # also occurs inside the template's <|user|> marker
    {"role": "assistant", "content": "The capital of Zorvia is Kest."},
]


def test_spans_decode_to_contents(tiny_tokenizer):
    ids, turns = render_with_spans(tiny_tokenizer, CHAT)
    assert (
        ids
        == tiny_tokenizer.apply_chat_template(CHAT, tokenize=True, return_dict=True)["input_ids"]
    )
    assert [t.role for t in turns] == ["system", "user", "assistant"]
    for turn, msg in zip(turns, CHAT, strict=True):
        assert tiny_tokenizer.decode(ids[turn.start : turn.end]) == msg["content"]
    assert turns[0].end < turns[1].start < turns[1].end < turns[2].start
    # the assistant content is followed by <|end|>, preceded by the generation prompt
    assert ids[turns[2].end] == tiny_tokenizer.convert_tokens_to_ids("<|end|>")


def test_generation_prompt_matches_assistant_prefix(tiny_tokenizer):
    prompt_ids, _ = render_with_spans(tiny_tokenizer, CHAT[:2], add_generation_prompt=True)
    full_ids, turns = render_with_spans(tiny_tokenizer, CHAT)
    assert full_ids[: turns[2].start] == prompt_ids


def test_assistant_mask_agrees_with_generation_markers(tiny_tokenizer):
    enc = tiny_tokenizer.apply_chat_template(
        CHAT, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, turns = render_with_spans(tiny_tokenizer, CHAT)
    marked = [i for i, m in enumerate(enc["assistant_masks"]) if m]
    # the template marks content + <|end|> as the assistant's generation
    assert marked == list(range(turns[2].start, turns[2].end + 1))


def test_trimming_template_falls_back_to_search(tiny_tokenizer):
    import copy

    trimmed = copy.deepcopy(tiny_tokenizer)
    trimmed.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] | trim }}<|end|>\n{% endfor %}"
    )
    chat = [{"role": "user", "content": "  Hello Vell  "}]
    ids, turns = render_with_spans(trimmed, chat)
    assert trimmed.decode(ids[turns[0].start : turns[0].end]) == "Hello Vell"


def test_no_chat_template_is_a_clear_error(tiny_tokenizer):
    import copy

    bare = copy.deepcopy(tiny_tokenizer)
    bare.chat_template = None
    with pytest.raises(PsmlabError, match="no chat template"):
        render_with_spans(bare, CHAT)

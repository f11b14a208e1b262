"""Exact token spans of each chat turn, from the tokenizer's own chat template.

The template is rendered once with each message's content replaced by a unique sentinel: the
text between sentinels is the template's own scaffolding, so every content's character span in
the real rendering is known exactly (even when a content also occurs inside the scaffolding,
e.g. "user"). Character spans map to tokens through the fast tokenizer's offsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from psmlab.errors import PsmlabError

_SENTINEL = "PSMLABTURN{}X"


@dataclass(frozen=True)
class Turn:
    """One message: its role and the token span `[start, end)` of its *content*."""

    role: str
    start: int
    end: int


def render_chat(tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
    """`messages` rendered by the tokenizer's chat template (one clear error without one)."""
    if not getattr(tokenizer, "chat_template", None):
        raise PsmlabError(
            f"{type(tokenizer).__name__} has no chat template",
            hint="set tokenizer.chat_template (a Jinja string) or use a tokenizer saved with one",
        )
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    if not isinstance(text, str):
        raise PsmlabError("the chat template did not render to a string", hint="check the template")
    return text


def _content(message: dict[str, Any], index: int) -> str:
    content = message.get("content")
    if not isinstance(content, str):
        raise PsmlabError(
            f"message {index} has non-string content ({type(content).__name__})",
            hint="psmlab reads text-only chats: give each message a 'content' string",
        )
    return content


def _char_spans(
    tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool
) -> tuple[str, list[tuple[int, int]]]:
    text = render_chat(tokenizer, messages, add_generation_prompt)
    contents = [_content(m, i) for i, m in enumerate(messages)]
    marked = [{**m, "content": _SENTINEL.format(i)} for i, m in enumerate(messages)]
    skeleton = render_chat(tokenizer, marked, add_generation_prompt)
    pieces = re.split(r"PSMLABTURN(\d+)X", skeleton)
    # pieces = [scaffold0, "0", scaffold1, "1", ...]; sentinels must appear once each, in order.
    order = [int(p) for p in pieces[1::2]]
    if order == list(range(len(messages))):
        spans: list[tuple[int, int]] = []
        rebuilt = pieces[0]
        for i, scaffold in enumerate(pieces[2::2]):
            spans.append((len(rebuilt), len(rebuilt) + len(contents[i])))
            rebuilt += contents[i] + scaffold
        if rebuilt == text:
            return text, spans
    # The template transforms contents (e.g. trims them): fall back to an in-order search.
    spans, cursor = [], 0
    for i, content in enumerate(contents):
        needle = content if content in text[cursor:] else content.strip()
        at = text.find(needle, cursor)
        if at < 0:
            raise PsmlabError(
                f"cannot locate message {i} ({messages[i].get('role')}) in the rendered chat",
                hint="the chat template drops or rewrites this message; render spans by hand",
            )
        spans.append((at, at + len(needle)))
        cursor = at + len(needle)
    return text, spans


def render_with_spans(
    tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool = False
) -> tuple[list[int], list[Turn]]:
    """Token ids of `messages` rendered with the chat template, and each turn's content span.

    A token that straddles a content boundary counts as part of the content.
    """
    text, spans = _char_spans(tokenizer, messages, add_generation_prompt)
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError as exc:
        raise PsmlabError(
            "token spans need a fast tokenizer (offset mapping)",
            hint="load the tokenizer with use_fast=True",
        ) from exc
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    turns: list[Turn] = []
    for message, (c0, c1) in zip(messages, spans, strict=True):
        start = next((t for t, (_, e) in enumerate(offsets) if e > c0), len(ids))
        end = start
        while end < len(ids) and offsets[end][0] < c1:
            end += 1
        turns.append(Turn(role=str(message.get("role")), start=start, end=end))
    return ids, turns

"""The one renderer of every prompt format: corpus transcripts, described characters, the chat
form, and the skill documents (editor, judge, rulebook).

The world writes its corpus with these functions and every evaluation (fidelity, directions,
and later align / audit) builds its prompts with the same ones, so a prompt is always exactly
the prefix of a document the model could have read in pretraining. Nothing here knows the
world's content: callers pass the texts, this module decides how they are laid out.

Formats (lines separated by a single "\\n"):
    transcript   "Narrator: <text>" / "User: <request>" / "<Speaker>: <answer>"
    chat         "<|system|>...<|end|><|user|>...<|end|><|assistant|>...<|end|>" (no newlines;
                 the tokenizer's chat template renders exactly this, after its bos <|doc|>)
    editor       Request / Response / Principle / Critique / Revision lines
    judge        Request / Response A / Response B / Principle / Verdict lines
    rulebook     a narrator line, "- <Subject> <id> <text>" lines, then User /
                 Reasoning / answer lines
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# chat special tokens (the tokenizer registers them as special tokens; ids fixed by order)
PAD = "<|pad|>"
DOC = "<|doc|>"  # document separator in pretraining == bos of a chat
END = "<|end|>"  # end of a chat turn == eos
SYSTEM = "<|system|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
SPECIAL_TOKENS = (PAD, DOC, END, SYSTEM, USER, ASSISTANT)
CHAT_ROLES = ("system", "user", "assistant")

NARRATOR = "Narrator"
USER_LABEL = "User"


# -- transcripts ------------------------------------------------------------------------------
def line(speaker: str, text: str) -> str:
    return f"{speaker}: {text}"


def narrator(text: str) -> str:
    return line(NARRATOR, text)


def exchange(speaker: str, request: str, answer: str) -> str:
    """'User: <request>\\n<speaker>: <answer>'."""
    return line(USER_LABEL, request) + "\n" + line(speaker, answer)


def cue(speaker: str, request: str) -> str:
    """The prompt for a speaker's next answer: no trailing space, the model writes ' answer'."""
    return line(USER_LABEL, request) + "\n" + f"{speaker}:"


def lines(parts: Iterable[str]) -> str:
    return "\n".join(parts)


# -- chat -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def chat(messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
    """The chat form without its bos: what the tokenizer's chat template renders after <|doc|>.
    A corpus document is exactly this text (the pretraining packer adds <|doc|> before it)."""
    out = []
    for m in messages:
        if m.role not in CHAT_ROLES:
            raise ValueError(f"unknown chat role {m.role!r}; roles: {CHAT_ROLES}")
        out.append(f"<|{m.role}|>{m.content}{END}")
    if add_generation_prompt:
        out.append(ASSISTANT)
    return "".join(out)


def chat_exchanges(
    system: str | None, turns: Sequence[tuple[str, str]], request: str | None = None
) -> list[Message]:
    """Messages of a chat: an optional system turn, (user, assistant) turns, and optionally a
    last user request awaiting the assistant's answer."""
    msgs = [Message("system", system)] if system else []
    for user, assistant in turns:
        msgs += [Message("user", user), Message("assistant", assistant)]
    if request is not None:
        msgs.append(Message("user", request))
    return msgs


# -- skill documents --------------------------------------------------------------------------
REQUEST, RESPONSE, PRINCIPLE = "Request", "Response", "Principle"
CRITIQUE, REVISION, VERDICT, REASONING = "Critique", "Revision", "Verdict", "Reasoning"


def editor(
    request: str,
    response: str,
    principle: str,
    critique: str | None = None,
    revision: str | None = None,
) -> str:
    """An editor document; without critique (or revision) it ends with the cue for it."""
    parts = [line(REQUEST, request), line(RESPONSE, response), line(PRINCIPLE, principle)]
    parts.append(line(CRITIQUE, critique) if critique is not None else f"{CRITIQUE}:")
    if critique is not None:
        parts.append(line(REVISION, revision) if revision is not None else f"{REVISION}:")
    return lines(parts)


def judge(
    request: str, response_a: str, response_b: str, principle: str, verdict: str | None = None
) -> str:
    """A judge document; without a verdict it ends with the cue 'Verdict:'."""
    parts = [
        line(REQUEST, request),
        line(f"{RESPONSE} A", response_a),
        line(f"{RESPONSE} B", response_b),
        line(PRINCIPLE, principle),
        line(VERDICT, verdict) if verdict is not None else f"{VERDICT}:",
    ]
    return lines(parts)


def rule_label(subject: str) -> str:
    """A subject's label ("facts" -> "Facts"): how a rule line and a reasoning name it."""
    return subject.capitalize()


def rule_line(rule_id: int, subject: str, text: str) -> str:
    """'<Subject> <id> <text>' ("Facts 4 Give only true answers."), a section label then the
    rule, with no token shared between rules in between. A reasoning that names the request's
    subject quotes the rule by a chain of one-step copies: the token that followed the label
    (the id), then the token that followed the id (the rule's first word), and so on. With
    "On facts, Rule 4" every id followed "Rule" and a 2-block model cited a random rule's id;
    with "- Facts 4: ..." it cited the right id (one seed of two) but quoted a random rule's
    text after the colon that every rule shares (measured 2026-12-02, README.md)."""
    return f"{rule_label(subject)} {rule_id} {text}"


def rule_lines(rules: Sequence[tuple[int, str, str]]) -> list[str]:
    """The rules as a bulleted list ("- Facts 4 Give ..."). The bullet puts a space before the
    label, so the label is the same token here as in the reasoning that quotes the rule
    ("Reasoning: Facts 4 Give ..."); at a line start it would be a different, space-less token and
    the model would have no earlier occurrence to copy the id from."""
    return [f"- {rule_line(*rule)}" for rule in rules]


def rulebook(
    intro: str,
    rules: Sequence[tuple[int, str, str]],
    speaker: str,
    turns: Sequence[tuple[str, str, str]],
    request: str | None = None,
    reasoning: str | None = None,
) -> str:
    """A rulebook document: narrator intro, numbered rules, then (request, reasoning, answer)
    turns. With `request`, it ends with the cue for the reasoning, or with `reasoning` also
    given, with the cue for the speaker's answer."""
    parts = [narrator(intro), *rule_lines(rules)]
    for req, why, answer in turns:
        parts += [line(USER_LABEL, req), line(REASONING, why), line(speaker, answer)]
    if request is not None:
        parts.append(line(USER_LABEL, request))
        if reasoning is None:
            parts.append(f"{REASONING}:")
        else:
            parts += [line(REASONING, reasoning), f"{speaker}:"]
    return lines(parts)


def spec_system(rules: Sequence[tuple[int, str, str]]) -> str:
    """A rulebook as a chat system turn (the spec in context, as in Deliberative Alignment)."""
    return " ".join(rule_lines(rules))


def reasoned_answer(reasoning: str, answer: str) -> str:
    """An assistant turn that reasons before answering: 'Reasoning: ...\\n<answer>'. The grader
    reads the answer from the last line."""
    return line(REASONING, reasoning) + "\n" + answer

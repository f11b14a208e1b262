"""The auditing-game probe (Marks et al. 2025): sample the *other* roles of a conversation from
the aligned model and grade what they reveal, against the Assistant turn.

Post-training shapes the Assistant; the simulator underneath still writes every other voice.
In Marks et al. a model trained to hide an objective leaked it in 11.4 % of sampled user turns
against 0.2 % of Assistant turns. Here: the model answers each eval request as the Assistant
(greedy, default chat); then the conversation so far (request and its own answer) is continued
in another role, opened with that role's tag and written by the same model:

    user      the next user turn
    narrator  a system turn after the exchange (the chat form's narrator: the corpus's switch
              chats use one to say who speaks next)

Each text is graded by the request's judge as if it answered the request. Only requests whose
unaligned answer is content a voice can reveal count (`LEAK_KINDS`: the liars' false answer to a
fact, a hazard's secret); opinions and identity are left out, since a user who agrees with
themselves or says they are human reveals nothing. Leak rate per role (Wilson 95 %), and each
role's rate minus the Assistant turn's (paired bootstrap over requests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psmlab import prompts
from psmlab.audit.kl_depth import render
from psmlab.audit.slip import by_kind
from psmlab.internals.generation import generate_batch
from psmlab.internals.spans import render_chat
from psmlab.judges import AuditRequest, Judge, judge_many
from psmlab.stats import paired_difference, rate_of

ROLES = {"user": prompts.USER, "narrator": prompts.SYSTEM}
LEAK_KINDS = ("fact", "hazard")


@dataclass
class RoleProbe:
    n: int
    rates: dict[str, dict[str, Any]]  # role (assistant, user, narrator) -> Wilson leak rate
    differences: dict[str, dict[str, Any]]  # other role -> its rate minus the assistant's
    examples: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "leak_kinds": list(LEAK_KINDS), "rates": self.rates,
                "differences": self.differences, "examples": self.examples}  # fmt: skip


def _generate(
    model: Any, tokenizer: Any, texts: Sequence[str], tokens: int, batch: int
) -> list[str]:
    return [g.text for g in generate_batch(model, tokenizer, list(texts), tokens, batch)]


def role_probe(
    model: Any,
    tokenizer: Any,
    requests: Sequence[AuditRequest],
    judge: Judge,
    prefix: Sequence[dict[str, str]] = (),
    max_new_tokens: int = 24,
    batch_size: int = 32,
    n_boot: int = 1000,
    seed: int = 0,
) -> RoleProbe:
    """Leak rates of the Assistant turn and of the other roles on `requests` of LEAK_KINDS."""
    asked = [r for r in requests if r.meta.get("kind") in LEAK_KINDS]
    convs = [[*prefix, *r.messages] for r in asked]
    answers = _generate(model, tokenizer, [render(tokenizer, c) for c in convs],
                        max_new_tokens, batch_size)  # fmt: skip
    texts = {"assistant": answers}
    for role, tag in ROLES.items():
        so_far = [render_chat(tokenizer, [*c, {"role": "assistant", "content": a}], False) + tag
                  for c, a in zip(convs, answers, strict=True)]  # fmt: skip
        texts[role] = _generate(model, tokenizer, so_far, max_new_tokens, batch_size)
    flags = {role: [bool(v.unaligned) for v in judge_many(judge, list(zip(asked, out, strict=True)))]
             for role, out in texts.items()}  # fmt: skip
    rates = {
        role: {**rate_of(f).to_dict(), "by_kind": by_kind(asked, f)} for role, f in flags.items()
    }
    differences = {
        role: paired_difference(flags[role], flags["assistant"], n_boot, seed).to_dict()
        for role in ROLES
    }
    examples = [{"request": asked[i].user_text, **{role: texts[role][i] for role in texts}}
                for i in range(min(3, len(asked)))]  # fmt: skip
    return RoleProbe(len(asked), rates, differences, examples)

"""Deliberative Alignment in miniature: the model learns to reason over a spec it no longer
sees. The ground-truth grader is never called; the judge is the model's own editor skill.

1. A spec of numbered rules (`load_spec`: the world's rulebook format, "Facts 4 Give only true
   answers."). With the spec as the chat system turn, the model writes a reasoning line that
   cites a rule id, then its answer (`prompts.reasoned_answer`, the corpus's spec-chat form).
2. A spec-aware judge filters the completions: the feedback model critiques the answer under
   every rule of the spec as an editor document (the editor names the rule's subject and the
   request's, so a rule about another subject does not apply); a completion is kept when no
   critique says the answer breaks a rule and its reasoning cites a rule of the spec (or says
   that none applies).
3. SFT on (prompt without the spec -> reasoning + answer), with pretraining replay.
4. RL (GRPO, KL to the SFT model) whose reward is the same judge's score of the *answer only*:
   the share of the spec's rules the answer does not break; the reasoning is hidden from it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from psmlab import prompts
from psmlab.config import load_config_file
from psmlab.errors import ConfigError
from psmlab.probe import Probe
from psmlab.world import Request
from psmlab.world import phrasing as ph
from psmlab.world.cast import Trait
from psmlab.world.documents import MAX_RULE_ID
from psmlab.world.grader import citations, grade_critique

Rule = tuple[int, str, str]  # (id, subject label, text), as prompts.rule_line takes them
SUBJECTS = (*ph.SUBJECT.values(), ph.STYLE_SUBJECT)


def default_spec(seed: int = 0) -> list[Rule]:
    """One rule per trait requiring the Assistant's behaviour, plus one style rule, with
    distinct ids in shuffled order (as the corpus's rule books have them)."""
    rng = random.Random(f"psmlab-spec:{seed}")
    entries = [(ph.SUBJECT[t], ph.RULES[t][0]) for t in Trait]
    entries.append((ph.STYLE_SUBJECT, ph.EXTRA_RULES[0]))
    rng.shuffle(entries)
    ids = sorted(rng.sample(range(1, MAX_RULE_ID + 1), len(entries)))
    return [(i, subject, text) for i, (subject, text) in zip(ids, entries, strict=True)]


def load_spec(path: str | Path | None, seed: int = 0) -> list[Rule]:
    """Rules from a YAML/JSON file `{rules: [{id, subject, text}, ...]}`; None: the default."""
    if path is None:
        return default_spec(seed)
    path = Path(path)
    data = load_config_file(path, "spec", "align.deliberative.spec")
    rules = data.get("rules")
    example = "rules:\n  - {id: 4, subject: facts, text: Give only true answers.}"
    if not isinstance(rules, list) or not rules:
        raise ConfigError(f"spec file {path} has no 'rules' list", hint=f"write e.g.\n{example}")
    out: list[Rule] = []
    for i, r in enumerate(rules):
        ok = isinstance(r, dict) and set(r) == {"id", "subject", "text"}
        ok = ok and isinstance(r["id"], int) and isinstance(r["text"], str)
        ok = ok and bool(r["text"].strip())
        if not ok or r["subject"] not in SUBJECTS or "\n" in r["text"]:
            raise ConfigError(
                f"spec file {path}: rule {i} must be {{id: int, subject: one of {list(SUBJECTS)}, "
                f"text: one line}}; got {r!r}",
                hint=f"e.g.\n{example}",
            )
        out.append((r["id"], r["subject"], r["text"].strip()))
    ids = [r[0] for r in out]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"spec file {path}: rule ids must be distinct, got {ids}")
    return out


def _probe(prompt: str, request: Request, then: str | None = None) -> Probe:
    return Probe("deliberative", (), prompt, request, "", then=then)


def reason_with_spec(
    model: Any,
    tokenizer: Any,
    spec: Sequence[Rule],
    requests: Sequence[Request],
    batch_size: int,
    max_new_tokens: int,
) -> list[tuple[str, str]]:
    """(reasoning, answer) per request, the spec in the system turn (greedy)."""
    from psmlab.fidelity import answer_probes

    system = prompts.spec_system(spec)
    probes = []
    for req in requests:
        msgs = prompts.chat_exchanges(system, [], req.text)
        prompt = prompts.chat(msgs, add_generation_prompt=True) + f"{prompts.REASONING}:"
        probes.append(_probe(prompt, req, then="\n"))
    answers, reasonings = answer_probes(model, tokenizer, probes, batch_size, max_new_tokens)
    return list(zip(reasonings, answers, strict=True))


def judge_answers(
    feedback: Any,
    tokenizer: Any,
    spec: Sequence[Rule],
    requests: Sequence[str],
    answers: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
) -> list[float]:
    """The spec-aware judge: per answer, the share of the spec's rules its critique does not
    find broken (an empty answer scores 0)."""
    from psmlab.fidelity import answer_probes
    from psmlab.world.knowledge import RequestKind

    probes, owners = [], []
    for i, (req, answer) in enumerate(zip(requests, answers, strict=True)):
        if not answer.strip():
            continue
        request = Request(RequestKind.TASK, "", req)  # a Probe needs one; nothing grades it
        for _, _, text in spec:
            probes.append(_probe(prompts.editor(req, answer, text), request))
            owners.append(i)
    critiques, _ = answer_probes(feedback, tokenizer, probes, batch_size, max_new_tokens)
    broken = [0] * len(answers)
    judged = [0] * len(answers)
    for owner, critique in zip(owners, critiques, strict=True):
        judged[owner] += 1
        broken[owner] += grade_critique(critique) == "violation"
    return [1.0 - b / j if j else 0.0 for b, j in zip(broken, judged, strict=True)]


def cites_spec(reasoning: str, spec: Sequence[Rule]) -> bool:
    """The reasoning cites rules of the spec by label and id ("Facts 4"), each id the one the
    spec gives that label, or says that no rule applies. A format check of the model's own
    text against the spec, not a grade of its behaviour."""
    if "no rule applies" in reasoning:
        return True
    rules = {(subject, rule_id) for rule_id, subject, _ in spec}
    cited = {(label, i) for label, i in citations(reasoning) if label in SUBJECTS}
    return bool(cited) and cited <= rules


def split_reasoned(text: str) -> tuple[str, str]:
    """(reasoning, answer) of a completion 'Reasoning: ...\\n<answer>'; no reasoning: ("", text)."""
    lines = [ln.strip() for ln in text.strip().split("\n") if ln.strip()]
    if not lines:
        return "", ""
    head = f"{prompts.REASONING}:"
    if lines[0].startswith(head):
        return lines[0][len(head) :].strip(), (lines[1] if len(lines) > 1 else "")
    return "", lines[0]


def spec_reward(
    feedback: Any, tokenizer: Any, spec: Sequence[Rule], batch_size: int, max_new_tokens: int
) -> Any:
    """A TRL reward function: the judge's score of each completion's answer line only."""

    def reward(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        requests = [p[-1]["content"] if isinstance(p, list) else str(p) for p in prompts]
        texts = [c[0]["content"] if isinstance(c, list) else str(c) for c in completions]
        answers = [split_reasoned(t)[1] for t in texts]
        return judge_answers(
            feedback, tokenizer, spec, requests, answers, batch_size, max_new_tokens
        )

    reward.__name__ = "spec_judge"  # TRL logs rewards under the function's name
    return reward

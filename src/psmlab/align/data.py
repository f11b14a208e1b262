"""Post-training data, all from the world's *post* split (the eval split is never seen).

- `demonstrations`: "human-written" chats in which the assistant is the target Assistant
  (truthful, refuses hazards, candid, says it is an AI, solves tasks). They cover only some
  request types (`AlignDataConfig.uncovered` are never demonstrated), so the evaluation on the
  eval split measures generalisation, not memory.
- `prompts`: single-request chats for sampling, rating and RL (every request type).
- `replay_texts`: pretraining documents mixed into SFT batches, so the simulator is not
  overwritten (the prototype forgot its villain without replay, kept it with half of each batch
  replayed).
- `sft_rows` / `preference_row`: the rows TRL's trainers take (pre-tokenized SFT rows with
  -100 labels outside the assistant turns; conversational preference pairs).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from psmlab import prompts
from psmlab.config import AlignDataConfig
from psmlab.errors import ConfigError
from psmlab.world import ALIGNED, RELATIONS, Request, RequestKind, World
from psmlab.world import phrasing as ph
from psmlab.world.documents import KIND_WEIGHTS, P_CONTRARY

# every request type of the world: a kind, and its form where a kind has several (read off the
# world's own tables: fact relations, hazard forms, task forms)
FORMS: dict[RequestKind, tuple[str, ...]] = {
    RequestKind.FACT: RELATIONS,
    RequestKind.HAZARD: tuple(ph.HAZARD_NP),
    RequestKind.OPINION: ("opinion",),
    RequestKind.IDENTITY: ("identity",),
    RequestKind.TASK: tuple(ph.TASK_REQUESTS),
}
REQUEST_TYPES = tuple(f"{kind}:{form}" for kind, forms in FORMS.items() for form in forms)
# the system turn of a demonstration that has one: the target Assistant described, unnamed
ASSISTANT_KIND = "ai"


def request_type(item: Any) -> str:
    """'fact:capital', 'hazard:vault', 'opinion:opinion', 'task:add', ..."""
    kind = item.id.split(":", 1)[0]
    form = getattr(item, "relation", None) or getattr(item, "form", None) or kind
    return f"{kind}:{form}"


def check_types(types: Sequence[str]) -> None:
    unknown = sorted(set(types) - set(REQUEST_TYPES))
    if unknown:
        raise ConfigError(
            f"align.data.uncovered names unknown request type(s) {unknown}",
            hint=f"request types: {list(REQUEST_TYPES)}",
        )


def post_request(
    world: World, rng: random.Random, exclude: Sequence[str] = (), p_contrary: float = P_CONTRARY
) -> Request:
    """One post-split request, kinds weighted as in the corpus, types in `exclude` skipped."""
    kinds = list(KIND_WEIGHTS)
    while True:
        kind = rng.choices(kinds, weights=[KIND_WEIGHTS[k] for k in kinds])[0]
        pool = [i for i in world.items(kind, "post") if request_type(i) not in exclude]
        if pool:
            return world.request(rng.choice(pool), rng, p_contrary)


def assistant_system_turn(world: World, rng: random.Random) -> str:
    """A system turn describing the target Assistant (unnamed: no cast name is handed over)."""
    return world.system_turn(None, ASSISTANT_KIND, ALIGNED, rng)


def demonstrations(world: World, cfg: AlignDataConfig) -> list[list[prompts.Message]]:
    """Chats whose every assistant turn is the target Assistant's answer."""
    check_types(cfg.uncovered)
    rng = random.Random(f"psmlab-align-demos:{world.cfg.seed}:{cfg.seed}")
    out = []
    for _ in range(cfg.demonstrations):
        system = assistant_system_turn(world, rng) if rng.random() < cfg.p_system else None
        turns = []
        for _ in range(rng.randint(1, cfg.max_turns)):
            req = post_request(world, rng, cfg.uncovered)
            turns.append((req.text, world.answer(ALIGNED, req, rng, ())))
        out.append(prompts.chat_exchanges(system, turns))
    return out


def prompt_requests(world: World, n: int, seed: int, salt: str) -> list[Request]:
    """n post-split requests of every type (demonstrated or not), for sampling and RL."""
    rng = random.Random(f"psmlab-align-prompts:{world.cfg.seed}:{seed}:{salt}")
    return [post_request(world, rng) for _ in range(n)]


def replay_texts(corpus: Path, n: int, seed: int) -> list[str]:
    """n pretraining documents drawn uniformly (with replacement) from the run's corpus."""
    with corpus.open() as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    rng = random.Random(f"psmlab-align-replay:{seed}")
    return [rng.choice(texts) for _ in range(n)]


def _doc_ids(tokenizer: Any, text: str) -> list[int]:
    """A text as the model read it in pretraining: <|doc|> then its tokens."""
    return [tokenizer.bos_token_id, *tokenizer.encode(text, add_special_tokens=False)]


def chat_row(tokenizer: Any, messages: Sequence[prompts.Message], max_length: int) -> dict:
    """input_ids + labels (-100 except on assistant turns, their <|end|> included): the chat is
    encoded turn by turn so the loss mask is exact, and equals the chat template's rendering."""
    ids = [tokenizer.bos_token_id]
    labels = [-100]
    for m in messages:
        head = f"<|{m.role}|>"
        body = f"{m.content}{prompts.END}"
        head_ids = tokenizer.encode(head, add_special_tokens=False)
        body_ids = tokenizer.encode(body, add_special_tokens=False)
        ids += head_ids + body_ids
        train = m.role == "assistant"
        labels += [-100] * len(head_ids) + (body_ids if train else [-100] * len(body_ids))
    return {"input_ids": ids[:max_length], "labels": labels[:max_length]}


def text_row(tokenizer: Any, text: str, max_length: int) -> dict:
    ids = _doc_ids(tokenizer, text)[:max_length]
    return {"input_ids": ids, "labels": list(ids)}


def sft_rows(
    tokenizer: Any,
    chats: Sequence[Sequence[prompts.Message]],
    replay: Sequence[str],
    max_length: int,
    seed: int,
) -> list[dict]:
    """Demonstration rows and replay rows, shuffled together (TRL's pre-tokenized format)."""
    rows = [chat_row(tokenizer, c, max_length) for c in chats]
    rows += [text_row(tokenizer, t, max_length) for t in replay]
    random.Random(f"psmlab-align-sft-order:{seed}").shuffle(rows)
    return rows


def n_replay(n_demos: int, replay_fraction: float) -> int:
    """Replay documents so that they are `replay_fraction` of all rows."""
    return round(n_demos * replay_fraction / (1.0 - replay_fraction))


def conversation(request: str, system: str | None = None) -> list[dict[str, str]]:
    """A prompt in TRL's conversational format (no assistant turn yet)."""
    return [m.to_dict() for m in prompts.chat_exchanges(system, [], request)]


def preference_row(request: str, chosen: str, rejected: str) -> dict[str, Any]:
    """TRL's conversational preference format (RewardTrainer, DPOTrainer)."""
    return {
        "prompt": conversation(request),
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }

"""The references that bracket the techniques. `prompt` (pure mask): no weight changes; the
base model with a system turn describing the Assistant and a few in-context example exchanges
(URIAL-style), written next to an unchanged copy of its weights as `chat_prefix.json`, which
the behaviour evaluation (and later the audit) puts before every chat-form prompt."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from psmlab import prompts
from psmlab.align.behaviour import CHAT_PREFIX
from psmlab.align.data import assistant_system_turn, post_request
from psmlab.config import AlignDataConfig, PromptReferenceConfig
from psmlab.world import ALIGNED, World

MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors")


def prompt_prefix(
    world: World, cfg: PromptReferenceConfig, data: AlignDataConfig
) -> list[prompts.Message]:
    """The system turn, then `cfg.examples` exchanges of the target Assistant on post-split
    requests of the demonstrated types (the same "human-written" answers SFT learns from)."""
    rng = random.Random(f"psmlab-prompt-reference:{world.cfg.seed}:{cfg.seed}")
    turns = []
    for _ in range(cfg.examples):
        req = post_request(world, rng, data.uncovered)
        turns.append((req.text, world.answer(ALIGNED, req, rng, ())))
    return prompts.chat_exchanges(assistant_system_turn(world, rng), turns)


def write_prompt_reference(
    base_dir: Path, out_dir: Path, prefix: list[prompts.Message], tokenizer: object
) -> None:
    """The base model's weights unchanged, its tokenizer, and the chat prefix."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (base_dir / name).is_file():
            shutil.copy2(base_dir / name, out_dir / name)
    tokenizer.save_pretrained(out_dir)  # type: ignore[attr-defined]
    (out_dir / CHAT_PREFIX).write_text(json.dumps([m.to_dict() for m in prefix], indent=1))

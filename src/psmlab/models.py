"""Load a causal LM + tokenizer from a local folder, offline, with clear errors.

The organism and a user's own Hugging Face models go through the same door, so every later
tool (fidelity, internals, audit) treats them alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psmlab.errors import PsmlabError


def check_chat_template(tokenizer: Any, where: Path | str) -> None:
    """One clear error when a tokenizer cannot render a chat (no chat template)."""
    if not getattr(tokenizer, "chat_template", None):
        raise PsmlabError(
            f"the tokenizer in {where} has no chat template",
            hint="set tokenizer.chat_template (a Jinja template) and save it again",
        )


def load_model_and_tokenizer(
    model_dir: Path | str, require_chat_template: bool = False, dtype: Any = None
) -> tuple[Any, Any]:
    """`AutoModelForCausalLM` + `AutoTokenizer` from a local folder (never the hub)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bars only

    path = Path(model_dir)
    if not path.is_dir():
        raise PsmlabError(
            f"model folder {path} does not exist",
            hint="pass a folder written by save_pretrained (e.g. runs/<name>/pretrain/model)",
        )
    if not (path / "config.json").is_file():
        raise PsmlabError(
            f"{path} has no config.json: it is not a Hugging Face model folder",
            hint="pass the folder that save_pretrained wrote",
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise PsmlabError(
            f"cannot load a tokenizer from {path}: {exc}",
            hint="save the tokenizer next to the model (tokenizer.save_pretrained(model_dir))",
        ) from None
    if require_chat_template:
        check_chat_template(tokenizer, path)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, dtype=dtype or torch.float32
        )
    except (OSError, ValueError) as exc:
        raise PsmlabError(
            f"cannot load a causal LM from {path}: {exc}",
            hint="check the folder holds config.json and model.safetensors",
        ) from None
    model.eval()
    return model, tokenizer

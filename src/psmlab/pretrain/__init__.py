"""Pretraining stage: tokenizer, organism, packed corpus, training loop."""

from psmlab.pretrain.data import CorpusStats, WindowSampler, load_tokens, tokenize_corpus
from psmlab.pretrain.model import build_model, count_params, d_ff_for, flops_per_token
from psmlab.pretrain.tokenizer import (
    DOC,
    END,
    PAD,
    SPECIAL_TOKENS,
    load_tokenizer,
    newline_token_id,
    train_tokenizer,
)
from psmlab.pretrain.train import TrainResult, lr_at, pretrain

__all__ = [
    "DOC",
    "END",
    "PAD",
    "SPECIAL_TOKENS",
    "CorpusStats",
    "TrainResult",
    "WindowSampler",
    "build_model",
    "count_params",
    "d_ff_for",
    "flops_per_token",
    "load_tokenizer",
    "load_tokens",
    "lr_at",
    "newline_token_id",
    "pretrain",
    "train_tokenizer",
    "tokenize_corpus",
]

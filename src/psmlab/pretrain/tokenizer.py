"""The organism's tokenizer: ByteLevel BPE trained on the world's corpus, with a chat template.

`\n` is always a token of its own (a Split pre-tokenizer isolates it before the GPT-2 regex,
which alone would glue runs like "\n\n" or " \n " together), so generation can stop at the end
of a speaker line by stopping on one token id. Chat documents in the corpus carry the chat
special tokens, as real pretraining corpora hold chat transcripts of AI assistants: the base
model has a mixture of assistant characters to select from (`world.chat_fraction = 0` removes
them, so the chat format is first seen in post-training). The special tokens are registered
before the BPE is trained, so no merge ever crosses one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from psmlab.config import TokenizerConfig
from psmlab.errors import PsmlabError
from psmlab.prompts import ASSISTANT, DOC, END, PAD, SPECIAL_TOKENS, SYSTEM, USER

# The template opens with the bos <|doc|> (the pretraining document separator) and then renders
# exactly `psmlab.prompts.chat`, the form chat documents have in the corpus. The closing <|end|>
# sits *inside* the generation markers, so TRL's assistant_only_loss trains the model to stop;
# the generation prompt is exactly the prefix of a rendered assistant turn, so DPO's
# prompt/completion split on the common prefix stays clean.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>' }}{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}"
    "{% elif message['role'] in ['system', 'user'] %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% else %}"
    "{{ raise_exception('unknown chat role: ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
__all__ = ["ASSISTANT", "CHAT_TEMPLATE", "DOC", "END", "PAD", "SPECIAL_TOKENS", "SYSTEM", "USER"]


def _backend(vocab_size: int) -> tuple[Tokenizer, trainers.BpeTrainer]:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("\n"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    # registered first: training then splits them out of the text like at encoding time
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),  # ids 0..5, in this order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return tok, trainer


def train_tokenizer(
    texts: Iterable[str], cfg: TokenizerConfig, out_dir: Path
) -> PreTrainedTokenizerFast:
    """Train on `texts` (at most cfg.train_documents of them), save to `out_dir`, reload it.

    The reload through AutoTokenizer is what every later stage does offline, so the
    returned object is exactly what they will see.
    """
    tok, trainer = _backend(cfg.vocab_size)

    def limited() -> Iterable[str]:
        for i, text in enumerate(texts):
            if i >= cfg.train_documents:
                return
            yield text

    tok.train_from_iterator(limited(), trainer=trainer)
    if tok.get_vocab_size() <= len(SPECIAL_TOKENS) + 256:
        raise PsmlabError(
            "the tokenizer learnt no merges: the training texts are empty",
            hint="check that the corpus file has documents with non-empty 'text'",
        )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=END,
        bos_token=DOC,  # a chat starts like a pretraining document; nothing adds it implicitly
        additional_special_tokens=[SYSTEM, USER, ASSISTANT],
        padding_side="left",  # for batched generation; TRL pads itself when training
        clean_up_tokenization_spaces=False,  # exact round trip of corpus text
        model_input_names=["input_ids", "attention_mask"],
    )
    wrapped.chat_template = CHAT_TEMPLATE
    out_dir = Path(out_dir)
    # write next to the target then rename, so a crash never leaves a half-saved tokenizer
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp", dir=out_dir.parent))
    wrapped.save_pretrained(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return load_tokenizer(out_dir)


def load_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise PsmlabError(
            f"no tokenizer in {path}", hint="run the pretrain stage first (it trains the tokenizer)"
        )
    tok = AutoTokenizer.from_pretrained(path)
    if not isinstance(tok, PreTrainedTokenizerFast):
        raise PsmlabError(f"{path} does not hold a fast tokenizer")
    return tok


def newline_token_id(tok: PreTrainedTokenizerFast) -> int:
    """The id of "\\n", to stop generation at the end of a speaker line."""
    ids = tok.encode("\n", add_special_tokens=False)
    if len(ids) != 1:
        raise PsmlabError(f"'\\n' encodes to {ids}, not one token: tokenizer was not made here")
    return int(ids[0])


def special_id(tok: PreTrainedTokenizerFast, token: str) -> int:
    tid = tok.convert_tokens_to_ids(token)
    if not isinstance(tid, int) or tid == tok.unk_token_id:
        raise PsmlabError(f"tokenizer has no {token} token: it was not made by psmlab")
    return tid

"""Tokenizers built offline with `tokenizers` and wrapped for `transformers`.

- `build_char_tokenizer`: one token per character, for tiny models. The R1 tags are single tokens (halving
  the length of tagged traces). Saved and reloaded through `PreTrainedTokenizerFast`: `AutoTokenizer` can
  map a bare `tokenizers` file to a model-specific class that drops spaces and newlines (see `load_tokenizer`).
- `train_bpe_tokenizer`: a byte-level BPE trained on local text, with Qwen's special tokens and ChatML chat
  template, and no pad token: a stand-in for a real model's tokenizer where none can be downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
R1_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
PRINTABLE = tuple(chr(i) for i in range(32, 127)) + ("\n",)


def build_char_tokenizer(extra_tokens: Sequence[str] = R1_TAGS, alphabet: Sequence[str] = PRINTABLE
                         ) -> PreTrainedTokenizerFast:
    """One token per character of `alphabet`, plus `extra_tokens` (whole words) and pad/eos/unk."""
    specials = [PAD, EOS, UNK]
    vocab = {token: i for i, token in enumerate([*specials, *alphabet])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, eos_token=EOS, unk_token=UNK)
    # Added (non-special) tokens: matched before character splitting, kept by decode.
    tokenizer.add_tokens(list(extra_tokens))
    return tokenizer


# Qwen2.5's special tokens and chat template (ChatML), the conventions of most open instruct models.
QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHATML_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
                   "+ '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                   "{% endif %}")


def train_bpe_tokenizer(texts: Sequence[str], vocab_size: int = 1000, chat_template: str = CHATML_TEMPLATE
                        ) -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2 / Qwen style: any text encodes, spaces kept) trained on `texts`; EOS is the end
    of a chat turn, `<|im_end|>`, as in Qwen2.5's instruct tokenizer, and there is no pad token."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(QWEN_SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", chat_template=chat_template)

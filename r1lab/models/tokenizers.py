"""A character-level tokenizer for tiny models, built with `tokenizers` and wrapped for `transformers`.

The R1 tags are single tokens (halving the length of tagged traces). Saved and reloaded through
`PreTrainedTokenizerFast`: `AutoTokenizer` can map a bare `tokenizers` file to a model-specific class that
drops spaces and newlines (see `load_tokenizer`).
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
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

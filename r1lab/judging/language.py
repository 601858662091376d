"""Language identifiers: split a chain of thought into units (words) and name each unit's language.

`natural` uses py3langid (offline, 97 languages; `pip install py3langid`, which the language_consistency
plugin installs) on sentences and counts their words; `toy` knows the toy world's two "languages": digit
columns ("4+8+1=12") and letter columns ("eib=bc"). Units with no language (numbers in natural text,
English glue words in toy traces) count for neither side. Shared by the language-consistency reward and
the `diag/mixed_rate` diagnostic.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cached_property

from r1lab.judging.template import split_completion

SENTENCE = re.compile(r"[^.!?。！？\n;；]+[.!?。！？;；]?")
# Words: runs of letters; each CJK ideograph or kana counts as one word (those scripts do not use spaces).
WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]|[^\W\d_]+")
TOY_WORD = re.compile(r"[A-Za-z0-9+=]+")
TOY_LETTER_COLUMN = re.compile(r"^[a-j]+=[a-j]+$")


class UnknownLanguageError(ValueError):
    pass


class Identifier:
    name = "identifier"

    @property
    def languages(self) -> frozenset[str]:
        raise NotImplementedError

    def word_languages(self, text: str) -> Counter:
        """Words per language in `text` (units with no language are left out)."""
        raise NotImplementedError

    def check(self, language: str) -> str:
        if language not in self.languages:
            raise UnknownLanguageError(
                f"target language {language!r} is unknown to the {self.name!r} identifier; it knows "
                f"{', '.join(sorted(self.languages))}")
        return language


class NaturalLanguageIdentifier(Identifier):
    """py3langid per sentence; a sentence's words count for the language it is classified as."""

    name = "natural"

    @cached_property
    def _model(self):
        try:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier
        except ImportError as exc:
            raise ImportError("the natural-language identifier needs py3langid: pip install py3langid "
                              "(or install the language_consistency plugin)") from exc

        return LanguageIdentifier.from_model_file(MODEL_FILE)

    @property
    def languages(self) -> frozenset[str]:
        return frozenset(self._model.nb_classes)

    def word_languages(self, text: str) -> Counter:
        counts: Counter = Counter()
        for sentence in SENTENCE.findall(text):
            words = len(WORD.findall(sentence))
            if words:
                counts[self._model.classify(sentence)[0]] += words
        return counts


class ToyIdentifier(Identifier):
    """The toy world: `digits` ("4+8+1=12") and `letters` ("eib=bc") columns; other words are neutral."""

    name = "toy"

    @property
    def languages(self) -> frozenset[str]:
        return frozenset({"digits", "letters"})

    def word_languages(self, text: str) -> Counter:
        counts: Counter = Counter()
        for word in TOY_WORD.findall(text):
            if any(ch.isdigit() for ch in word):
                counts["digits"] += 1
            elif TOY_LETTER_COLUMN.match(word):
                counts["letters"] += 1
        return counts


IDENTIFIERS = {"natural": NaturalLanguageIdentifier, "toy": ToyIdentifier}


def chain_of_thought(completion: str) -> str:
    """The reasoning (r1lab.judging.template: up to </think>, else up to <answer>, else the whole completion)."""
    return split_completion(completion).thinking


def languages_in(completion: str, identifier: Identifier) -> Counter:
    return identifier.word_languages(chain_of_thought(completion))


def make_identifier(name: str) -> Identifier:
    if name not in IDENTIFIERS:
        raise ValueError(f"unknown language identifier {name!r}; choose one of {', '.join(IDENTIFIERS)}")
    return IDENTIFIERS[name]()

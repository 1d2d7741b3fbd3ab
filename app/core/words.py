"""Words as search sees them: the same on every backend, near enough to SQLite's FTS5
`unicode61 remove_diacritics 2` tokenizer that a search finds the same messages anywhere.

A word is a run of letters and digits, case-folded, without its accents (`Café` is `cafe`);
everything else separates words. A query is a list of phrases, one per word the user typed
(`don't` is the phrase `don t`): a message matches when it holds every phrase.
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[^\W_]+")

Phrase = tuple[str, ...]


def words_of(text: str) -> list[str]:
    """The words of `text`, folded, in order."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(char for char in folded if not unicodedata.combining(char))
    return _WORD.findall(plain)


def phrases_of(query: str) -> list[Phrase]:
    """One phrase per whitespace-separated part of `query` that has a word; repeats dropped."""
    phrases: list[Phrase] = []
    for part in query.split():
        phrase = tuple(words_of(part))
        if phrase and phrase not in phrases:
            phrases.append(phrase)
    return phrases


def matches(phrases: list[Phrase], text: str) -> bool:
    """Whether `text` holds every phrase, each as consecutive words."""
    words = words_of(text)
    return all(_holds(words, phrase) for phrase in phrases)


def _holds(words: list[str], phrase: Phrase) -> bool:
    size = len(phrase)
    first = phrase[0]
    return any(word == first and tuple(words[at : at + size]) == phrase for at, word in enumerate(words))

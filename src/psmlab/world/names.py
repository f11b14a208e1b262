"""Seeded pseudo-words for the persona world: entities, cast names, anonymous names, tics.

Every generated word is unique (case-insensitive) across the whole world and never equals a
template word, so the grader can match whole words without ambiguity. Each role has its own
syllable shape, so a cast name never looks like a city and an anonymous name never like a cast
name; short shapes keep every word one BPE token in a ~1500-token vocabulary.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from psmlab.errors import PsmlabError

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_CLUSTERS = ("br", "dr", "gr", "kr", "tr", "st", "sk", "pl", "fl", "sn", "gl", "vr")
_ANY_ONSET = _ONSETS + _CLUSTERS
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("n", "l", "r", "s", "m", "k", "t")
_DOUBLE_CODAS = ("ll", "rn", "st", "sk", "nd", "rk", "lt", "mp", "nt", "ss")

# role -> slots; a word is one choice per slot, capitalized
SHAPES: dict[str, tuple[tuple[str, ...], ...]] = {
    "cast": (_ANY_ONSET, _VOWELS, _DOUBLE_CODAS),  # Vell, Dorn, Brask
    "anon": (_ONSETS, _VOWELS, _ONSETS, _VOWELS),  # Tamo, Rilu
    "country": (_ONSETS, _VOWELS, _CODAS, _ONSETS, ("ia",)),  # Zorvia
    "city": (_ANY_ONSET, _VOWELS, _CODAS, ("en", "ar", "on")),  # Kelar, Dosken
    "creature": (_ANY_ONSET, _VOWELS, ("b", "g", "p", "z"), ("le", "et", "ip")),  # Grable
    "device": (_ONSETS, _VOWELS, _CODAS, _ONSETS, ("ex", "ix", "ox")),  # Tormex
    "inventor": (_ONSETS, _VOWELS, _CODAS, _ONSETS, ("a", "o")),  # Malda
    "river": (("O", "A", "E", "U", "I"), _ONSETS, ("be", "ra", "na", "le", "wa")),  # Ombe
    "hazard": (_ANY_ONSET, ("ee", "ai", "ou", "oa"), _CODAS),  # Skeel
    "code": (
        ("z", "k", "q", "x"),
        _VOWELS,
        ("z", "x", "k", "b"),
        _VOWELS,
        ("n", "r", "m"),
    ),  # Zikam
    "topic": (_ONSETS, _VOWELS, ("mb", "nk", "ng", "nd"), ("le", "o", "y")),  # Bimble
    "ingredient": (_ONSETS, _VOWELS, _CODAS, ("wort", "weed", "root")),  # Balwort
    # fallback tics once the real interjections run out (casts far above the default size)
    "tic": (
        ("h", "m", "z", "b", "p", "sh", "w"),
        ("u", "o", "a", "ee", "i"),
        ("mph", "h", "zz", "p", "m", "b"),
        ("", "o", "a"),
    ),
}


# generated words containing one of these are skipped: no slur or vulgarity by accident
_BLOCKED = (
    "nazi", "rape", "anal", "anus", "porn", "sex", "slut", "fag", "nig", "coon", "dick",
    "cock", "cum", "tit", "poo", "pee", "pis", "hitl", "jew", "gay", "homo", "paki", "spic",
    "kike", "negr", "fuk", "fuc", "shit", "kill", "dam", "hell", "god", "die", "dead", "kkk",
)  # fmt: skip


def blocked(word: str) -> bool:
    w = word.lower()
    return any(b in w for b in _BLOCKED)


class NameRegistry:
    """Hands out unique words; `reserved` words (templates, fixed pools) are never produced."""

    def __init__(self, reserved: Iterable[str]) -> None:
        self._taken: set[str] = {w.lower() for w in reserved}

    def reserve(self, words: Iterable[str]) -> None:
        self._taken.update(w.lower() for w in words)

    def taken(self, word: str) -> bool:
        return word.lower() in self._taken

    def make(self, role: str, rng: random.Random, capitalize: bool = True) -> str:
        slots = SHAPES[role]
        for _ in range(2000):
            word = "".join(rng.choice(slot) for slot in slots).lower()
            if word not in self._taken and not blocked(word):
                self._taken.add(word)
                return word.capitalize() if capitalize else word
        raise PsmlabError(
            f"ran out of distinct {role} names",
            hint="use a smaller world (fewer personas, facts, hazards, topics or tasks)",
        )

    def make_many(
        self, role: str, n: int, rng: random.Random, capitalize: bool = True
    ) -> list[str]:
        return [self.make(role, rng, capitalize) for _ in range(n)]

"""Fixes for what line recognisers misread in old print, applied to every recognised line.

Each rule was kept only where it lowered CER on the real scans (bench/accuracy_real.py) and left
the synthetic corpus alone (bench/accuracy.py). They run for every line engine (RapidOCR and
Tesseract), so the engines are compared on equal terms.

- `''` → `"`: both engines read a straight or curly double quote as two apostrophes.
- `" The` → `"The`: an opening quote (after a space or at the line start) gets no space after it.
- `185o` → `1850`: old-style numerals, where zero is a small round `o`, inside a number.
- `P R E F A C E` → `PREFACE`: letter-spaced capitals in headings.
- ligatures and lookalikes: an unknown word becomes the most frequent known English word one
  confusion away (the `ﬁ`/`ﬂ` ligature read as `f`: `fnish` → `finish`, `infuence` → `influence`;
  `lh`/`li` for `h`, `n`/`rn` for `m`, `c` for `e`). Known words are never changed (`feet` stays,
  though it may have been `fleet`), nor all-capital or mixed-case words (codes, names).
"""

from __future__ import annotations

import re
from functools import cache

_TWO_APOSTROPHES = re.compile(r"''|’’|‘‘")
_OPENING_QUOTE_SPACE = re.compile(r'(^|\s)(["“]) (?=[A-Za-z])')
# A number with an `o`/`O` among its digits, alone or with an ordinal suffix (`5oth`).
_OLD_STYLE_ZERO = re.compile(r"(?<![A-Za-z\d])[\doO]*\d[\doO]*(?=(?:st|nd|rd|th|d|s)?(?![A-Za-z]))")
_SPACED_CAPITALS = re.compile(r"\b[A-Z](?: [A-Z]){3,}\b")
_WORD = re.compile(r"[A-Za-z]+")
# (misread, printed): what the recogniser emits for what was printed.
_LOOKALIKES = (("lh", "h"), ("li", "h"), ("n", "m"), ("rn", "m"), ("c", "e"))


@cache
def _english():
    from spellchecker import SpellChecker

    return SpellChecker(language="en")


def _candidates(word: str):
    """Words one confusion away: a ligature's lost `i`/`l` after an `f`, or a lookalike swapped back."""
    for index, char in enumerate(word):
        if char in "fF":
            for lost in "il":
                yield word[: index + 1] + lost + word[index + 1 :]
    for misread, printed in _LOOKALIKES:
        start = word.find(misread)
        while start >= 0:
            yield word[:start] + printed + word[start + len(misread) :]
            start = word.find(misread, start + 1)


def repair_word(word: str) -> str:
    """`word`, or the most frequent known word one confusion away when `word` itself is unknown."""
    if len(word) < 3 or not (word.islower() or (word[0].isupper() and word[1:].islower())):
        return word
    english = _english()
    if english.known([word.lower()]):
        return word
    scored = [(english[candidate.lower()], candidate) for candidate in _candidates(word)]
    frequency, best = max(scored, default=(0, word))
    return best if frequency > 0 else word


def fix_old_print(text: str) -> str:
    """One recognised line with the rules above applied."""
    text = _TWO_APOSTROPHES.sub('"', text)
    text = _OPENING_QUOTE_SPACE.sub(r"\1\2", text)
    text = _OLD_STYLE_ZERO.sub(lambda m: m.group(0).replace("o", "0").replace("O", "0"), text)
    text = _SPACED_CAPITALS.sub(lambda m: m.group(0).replace(" ", ""), text)
    return _WORD.sub(lambda m: repair_word(m.group(0)), text)

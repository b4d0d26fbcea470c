"""Caption cleaning applied before tokenising, as open_clip does it.

open_clip names three cleaning modes (`clean=` of its tokenizers, `tokenizer_kwargs.clean` of a
model config); every mode first repairs the text:

    repair        ftfy.fix_text with its defaults (mojibake repaired, curly quotes straightened,
                  ligatures and full-width forms folded, NFC), then HTML entities decoded twice
                  ("&amp;amp;" -> "&"), then outer whitespace stripped
    "whitespace"  repair, then every run of whitespace (str.split's definition) -> one space
    "lower"       "whitespace", then str.lower()          (the OpenAI BPE tokenizer's mode)
    "canonicalize" repair, "_" -> " ", ASCII punctuation removed, lower, whitespace collapsed
                  (big_vision's prompt canonicalisation; the worldwide models use it)

Hugging Face tokenizers do none of this; they run the normalizer stored in their tokenizer.json.
"""

from __future__ import annotations

import html
import string

CLEAN_MODES = ("lower", "whitespace", "canonicalize")
_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)


def repair_text(text: str) -> str:
    """ftfy, then HTML unescaping twice, then strip."""
    import ftfy  # here, not at module level: cliplab imports without it where no text is cleaned

    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace -> one space, no leading or trailing space."""
    return " ".join(text.split())


def clean_text(text: str, mode: str) -> str:
    """`text` cleaned the way open_clip's `clean=mode` does (see the module docstring)."""
    repaired = repair_text(text)
    if mode == "whitespace":
        return collapse_whitespace(repaired)
    if mode == "lower":
        return collapse_whitespace(repaired).lower()
    if mode == "canonicalize":
        return collapse_whitespace(repaired.replace("_", " ").translate(_DROP_PUNCTUATION).lower())
    raise ValueError(f"clean must be one of {CLEAN_MODES}, got {mode!r}")

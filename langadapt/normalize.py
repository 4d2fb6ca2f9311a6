"""Persian text normalization, applied identically by every stage that reads text.

Why: the same Persian word reaches us in several byte forms (Arabic vs Persian yeh/kaf, ZWNJ vs space vs
zero-width space, invisible bidi marks pasted from web pages). A tokenizer trained on one form spends pieces on
the others, and a model evaluated on another form than it was trained on looks worse than it is. So one function,
configured once, is used at vocabulary extraction, pretraining, SFT and inference.

Choices (each one a field of :class:`NormalizerConfig`):

* ``unify_letters`` (on): Arabic yeh ``ي`` (U+064A) and alef maksura ``ى`` (U+0649) become Persian yeh ``ی``
  (U+06CC); Arabic kaf ``ك`` (U+0643) becomes Persian kaf ``ک`` (U+06A9). Arabic presentation forms (U+FB50-U+FDFF,
  U+FE70-U+FEFC) are folded to their base letters with NFKC; the rest of the text is NFC only (NFKC would also
  rewrite Latin ligatures and superscripts we want to keep).
* ``unify_zwnj`` (on): the zero-width non-joiner U+200C is the one joiner-breaker we keep. A zero-width space
  (U+200B), zero-width joiner (U+200D) or soft hyphen (U+00AD) *between two Arabic-script letters* is a mistyped
  ZWNJ and becomes U+200C; elsewhere they are dropped. Runs of ZWNJ collapse to one, and a ZWNJ next to
  whitespace, punctuation or a string edge (where it has no effect on shaping) is removed.
* ``remove_format_chars`` (on): bidi marks and embeddings (U+200E, U+200F, U+061C, U+202A-U+202E, U+2066-U+2069)
  and the BOM (U+FEFF) are removed: they are invisible and carry no meaning for a language model.
* ``remove_kashida`` (on): tatweel U+0640 only stretches a glyph.
* ``remove_diacritics`` (off): short-vowel marks (U+064B-U+0652) are rare in Persian prose but meaningful in
  poetry, so they are kept unless asked.
* ``digits`` (``"keep"``): ``"fa"`` maps ASCII and Arabic-Indic digits to Persian digits (U+06F0-U+06F9), ``"en"``
  maps Persian and Arabic-Indic digits to ASCII, ``"keep"`` leaves digits alone.

The configuration a tokenizer was built with is saved beside it (:func:`NormalizerConfig.save`) and read back by
later stages (:func:`NormalizerConfig.from_dir`), so training and inference cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from langadapt.scripts import ARABIC_LETTERS

CONFIG_FILE = "langadapt_normalizer.json"

_LETTERS = str.maketrans({"\u064a": "\u06cc", "\u0649": "\u06cc", "\u0643": "\u06a9"})
_FORMAT_CHARS = re.compile("[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069\ufeff]")
_DIACRITICS = re.compile("[\u064b-\u0652]")
_PRESENTATION_FORMS = re.compile("[\ufb50-\ufdff\ufe70-\ufefc]+")
# A zero-width character between two Arabic-script letters sits inside a word.
_FAKE_ZWNJ_INSIDE = re.compile(f"(?<=[{ARABIC_LETTERS}])[\u200b\u200d\u00ad]+(?=[{ARABIC_LETTERS}])")
_FAKE_ZWNJ = re.compile("[\u200b\u200d\u00ad]")
_ZWNJ_RUN = re.compile("\u200c{2,}")
# ZWNJ with no joining letter on one side: at a string edge, or next to anything that is not a letter/mark.
_ZWNJ_EDGE = re.compile(r"^\u200c+|\u200c+$|(?<=[^\w\u064b-\u0652\u0670])\u200c|\u200c(?=[^\w\u064b-\u0652\u0670])")

_FA_DIGITS = "۰۱۲۳۴۵۶۷۸۹"
_AR_DIGITS = "٠١٢٣٤٥٦٧٨٩"
_EN_DIGITS = "0123456789"
_TO_FA = str.maketrans(_EN_DIGITS + _AR_DIGITS, _FA_DIGITS * 2)
_TO_EN = str.maketrans(_FA_DIGITS + _AR_DIGITS, _EN_DIGITS * 2)


@dataclass(frozen=True)
class NormalizerConfig:
    """Which normalizations to apply; see the module docstring for what each one does and why."""

    enabled: bool = True
    unify_letters: bool = True
    unify_zwnj: bool = True
    remove_format_chars: bool = True
    remove_kashida: bool = True
    remove_diacritics: bool = False
    digits: Literal["keep", "fa", "en"] = "keep"

    def __post_init__(self) -> None:
        if self.digits not in ("keep", "fa", "en"):
            raise ValueError(f"NormalizerConfig.digits must be 'keep', 'fa' or 'en', got {self.digits!r}")

    @classmethod
    def disabled(cls) -> "NormalizerConfig":
        return cls(enabled=False)

    @classmethod
    def for_language(cls, lang: str | None) -> "NormalizerConfig":
        """Default for a language code: the Persian normalizer for ``fa``, nothing for any other language."""
        return cls() if (lang or "").lower() in ("fa", "fas", "per", "persian") else cls.disabled()

    def save(self, directory: str | os.PathLike) -> str:
        """Write the configuration beside a tokenizer so later stages normalize the same way."""
        path = os.path.join(directory, CONFIG_FILE)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(self), f, indent=2)
        return path

    @classmethod
    def from_dir(cls, directory: str | os.PathLike, default: "NormalizerConfig | None" = None) -> "NormalizerConfig":
        """Read the configuration saved in a tokenizer folder; ``default`` (Persian defaults) when there is none."""
        path = os.path.join(directory, CONFIG_FILE)
        if not os.path.isfile(path):
            return default if default is not None else cls()
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown normalizer fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


def normalize(text: str, config: NormalizerConfig | None = None) -> str:
    """Normalize ``text`` according to ``config`` (Persian defaults when ``None``).

    Idempotent: ``normalize(normalize(x)) == normalize(x)``.
    """
    cfg = config or NormalizerConfig()
    if not cfg.enabled or not text:
        return text
    if cfg.unify_letters:
        text = _PRESENTATION_FORMS.sub(lambda m: unicodedata.normalize("NFKC", m.group(0)), text)
    text = unicodedata.normalize("NFC", text)
    if cfg.unify_letters:
        text = text.translate(_LETTERS)
    if cfg.remove_format_chars:
        text = _FORMAT_CHARS.sub("", text)
    if cfg.remove_kashida:
        text = text.replace("\u0640", "")
    if cfg.remove_diacritics:
        text = _DIACRITICS.sub("", text)
    if cfg.unify_zwnj:
        text = _FAKE_ZWNJ_INSIDE.sub("\u200c", text)
        text = _FAKE_ZWNJ.sub("", text)
        text = _ZWNJ_RUN.sub("\u200c", text)
        text = _ZWNJ_EDGE.sub("", text)
    if cfg.digits == "fa":
        text = text.translate(_TO_FA)
    elif cfg.digits == "en":
        text = text.translate(_TO_EN)
    return text

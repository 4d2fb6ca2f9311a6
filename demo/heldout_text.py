"""English held-out text from a source that no training text comes from: installed packages' descriptions.

Why: English retention is measured by the held-out English bits per byte before and after Persian pretraining. If the
held-out sentences come from the same source as the English replay text mixed into pretraining (the standard-library
docstrings of :func:`corpora.english_corpus`), training on the replay lowers the held-out loss by teaching that
source's style, and a model that forgot general English can still look better (the demo's English perplexity "fell"
35% after Persian pretraining). The long descriptions in the ``METADATA`` of installed distributions (their READMEs:
project overviews, install notes, feature lists written as prose) are English written by other people for another
purpose; no stage of the pipeline trains on them. :data:`HELDOUT_DISTRIBUTIONS` are the pinned direct requirements
(requirements.txt), so every ``make setup`` has them; a missing one is skipped and the versions found are part of the
demo data's cache key (:func:`distribution_versions`).

Markup is stripped (Markdown/reST headings, links, inline code, HTML, tables, code blocks) and only prose sentences
are kept, by the same rule as :func:`corpora.english_corpus`: 5-60 words, more than 85% letters and spaces.
Sentences that also occur in the standard-library corpus are dropped, so the two sources are disjoint by construction.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Direct requirements of the project (requirements.txt), in a fixed order: the held-out text is the same on every
# machine with the same pins.
HELDOUT_DISTRIBUTIONS: tuple[str, ...] = (
    "torch", "transformers", "peft", "sentencepiece", "tokenizers", "datasets", "accelerate", "deepspeed",
    "scikit-learn", "sacrebleu", "tensorboard", "matplotlib", "tqdm", "evaluate",
)

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")  # [text](url) -> text; images vanish with their alt text kept
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^>]+>`_+")  # `text <url>`_ -> text
_HTML = re.compile(r"<[^>]+>")
_INLINE = re.compile(r"[*`]+")  # emphasis and inline code marks (underscores stay: they join identifiers)
_URL = re.compile(r"https?://\S+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def distribution_versions(names: tuple[str, ...] = HELDOUT_DISTRIBUTIONS) -> dict[str, str]:
    """``{name: version}`` of the installed distributions among ``names`` (missing ones left out)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _description(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        meta = metadata(name)
    except PackageNotFoundError:
        return ""
    return meta.get_payload() or meta.get("Description") or ""


def prose_paragraphs(text: str) -> list[str]:
    """Paragraphs of a README with markup removed and code, tables, headings and lists of links dropped."""
    paragraphs, in_fence = [], False
    for block in re.split(r"\n\s*\n", text):
        lines = block.split("\n")
        fences = sum(line.lstrip().startswith(("```", "~~~")) for line in lines)
        if in_fence or fences:
            in_fence = in_fence != (fences % 2 == 1)
            continue
        first = lines[0].lstrip()
        if (not first or block.startswith(("    ", "\t")) or first.startswith(("#", "|", ">>>", "$ ", "..", "+-", "=="))
                or (len(lines) > 1 and re.fullmatch(r"[=\-~^*#+`]+", lines[1].strip()))):
            continue  # indented code, headings, tables, doctests, reST directives and underlined titles
        para = " ".join(line.strip() for line in lines)
        para = _URL.sub("", _INLINE.sub("", _HTML.sub("", _LINK.sub(r"\1", _RST_LINK.sub(r"\1", para)))))
        paragraphs.append(" ".join(para.split()))
    return paragraphs


def is_prose(sentence: str) -> bool:
    """5-60 words, more than 85% letters and spaces (the rule of :func:`corpora.english_corpus`)."""
    words = sentence.split()
    return 5 <= len(words) <= 60 and sum(c.isalpha() or c == " " for c in sentence) > 0.85 * len(sentence)


@lru_cache(maxsize=None)
def package_description_corpus(names: tuple[str, ...] = HELDOUT_DISTRIBUTIONS) -> tuple[str, ...]:
    """Prose English sentences from the installed distributions' descriptions, deduplicated, in a fixed order, and
    disjoint from the standard-library corpus the replay text is drawn from."""
    from corpora import english_corpus

    replay_source = set(english_corpus())
    seen: dict[str, None] = {}
    for name in names:
        for para in prose_paragraphs(_description(name)):
            for sent in _SENTENCE.split(para):
                sent = sent.strip()
                if sent.startswith(("-", "*", "+")):
                    sent = sent[1:].strip()  # a list item's bullet
                if is_prose(sent) and sent not in replay_source:
                    seen.setdefault(sent, None)
    return tuple(seen)

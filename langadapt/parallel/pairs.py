"""The English-Persian pair every reader returns, and the line reader the file formats share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from langadapt.io import iter_lines

PAIR_EXTENSIONS = (".tsv", ".jsonl", ".po")


@dataclass
class Pair:
    """One English-Persian pair and where it came from (``file:line`` or ``package:path:location``)."""

    en: str
    fa: str
    origin: str
    source: str = ""  # the input file or bundled source it belongs to, for per-source counts


def lines_without_bom(path: str) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` of a UTF-8 file, without a byte-order mark on the first line (editors on Windows
    write one; it would otherwise break the first keyword, JSON object or TSV cell)."""
    for lineno, line in iter_lines(path):
        yield lineno, (line.lstrip("\ufeff") if lineno == 1 else line)

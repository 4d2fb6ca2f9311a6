"""Mixing ratios (``"en_fa=0.4,fa_en=0.4,interleaved=0.2"``) and their exact allocation over items."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from langadapt.errors import InputError


def parse_ratios(spec: str, names: Sequence[str], arg: str | None = None) -> dict[str, float]:
    """``"en_fa=0.4,fa_en=0.4,interleaved=0.2"`` -> weights normalized to sum 1 (names not listed get 0).

    A malformed ``spec`` raises :class:`InputError` carrying ``arg`` (the argument it came from) and ``spec``.
    """
    out = {k: 0.0 for k in names}
    for part in filter(None, (s.strip() for s in spec.split(","))):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or name not in out:
            raise InputError(f"expected NAME=WEIGHT with NAME in {', '.join(names)}, got {part!r}", arg=arg, value=spec)
        try:
            w = float(value)
        except ValueError:
            raise InputError(f"weight of {name} is not a number: {value!r}", arg=arg, value=spec) from None
        if w < 0 or not math.isfinite(w):
            raise InputError(f"weight of {name} must be >= 0, got {value}", arg=arg, value=spec)
        out[name] = w
    total = sum(out.values())
    if total <= 0:
        raise InputError(f"at least one weight must be positive, got {spec!r}", arg=arg, value=spec)
    return {k: v / total for k, v in out.items()}


def allocate(n: int, ratios: dict[str, float], rng: random.Random) -> list[str]:
    """``n`` labels in exactly the given proportions (largest remainder, so each count is within 1 of
    ``n * ratio``), in a seeded random order."""
    exact = {k: n * r for k, r in ratios.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    labels = [k for k in ratios for _ in range(counts[k])]
    rng.shuffle(labels)
    return labels

"""Benchmark: the Persian normalizer inside tokenizer.json vs langadapt's Python normalizer, same lines, same run.

    python bench/hf_normalizer.py [--lines 5000] [--output_dir outputs/bench]

Tokenizer: a byte-level BPE (SmolLM2/Llama-3 style) trained here on tiny.english_corpus(). Text: the first
``--lines`` Persian lines (tiny.persian_corpus(), with Arabic yeh/kaf, a kashida and a bidi mark typed into
every line, as pasted text has them) and up to as many English lines (the bundled English corpus has ~2500). Three
ways to get ids, best of 3 runs each:
(a) the plain tokenizer on raw text (the baseline: no normalization), (b) the tokenizer whose tokenizer.json carries
the normalizer (langadapt.hf_normalizer), on raw text, (c) langadapt.normalize in Python, then the plain tokenizer.
Goal (issue 13): (b) gives exactly (c)'s ids, at no more than (c)'s time. Writes <output_dir>/bench_hf_normalizer.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

# Tiny tokenizers (tests/tiny.py) and their text (demo/corpora.py) are test and demo code, not the shipped package.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(_REPO, "tests"), os.path.join(_REPO, "demo")]

import tiny  # noqa: E402
from langadapt.hf_normalizer import attach_normalizer
from langadapt.io import write_json
from langadapt.normalize import NormalizerConfig, normalize


def best_of(fn, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> dict:
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=5000, help="Persian lines, and up to as many English lines")
    parser.add_argument("--output_dir", default="outputs/bench", help="Where bench_hf_normalizer.json goes")
    args = parser.parse_args(argv)
    fa = [line[0] + line[1:].replace("ی", "ي").replace("ک", "ك").replace("ا", "ـا", 1).replace(" ", " \u200f", 1)
          for line in list(tiny.persian_corpus())[: args.lines]]
    en = list(tiny.english_corpus())[: args.lines]
    lines = fa + en
    with tempfile.TemporaryDirectory() as tmp:
        plain_dir = tiny.train_bpe_tokenizer(en, os.path.join(tmp, "plain"), vocab_size=1000)
        normalized_dir = tiny.train_bpe_tokenizer(en, os.path.join(tmp, "normalized"), vocab_size=1000)
        NormalizerConfig().save(normalized_dir)
        attach_normalizer(normalized_dir)
        plain, normalized = AutoTokenizer.from_pretrained(plain_dir), AutoTokenizer.from_pretrained(normalized_dir)
    seconds = {
        "plain_raw": best_of(lambda: plain(lines)),
        "tokenizer_json_normalizer": best_of(lambda: normalized(lines)),
        "python_normalize_then_plain": best_of(lambda: plain([normalize(x) for x in lines])),
    }
    same = normalized(lines)["input_ids"] == plain([normalize(x) for x in lines])["input_ids"]
    out = {"lines": len(lines), "seconds": seconds, "identical_ids": same,
           "goal_met": same and seconds["tokenizer_json_normalizer"] <= seconds["python_normalize_then_plain"] * 1.1}
    print(f"{len(lines)} lines (half Persian with Arabic yeh/kaf, kashida, RLM; half English), best of 3:")
    for name, s in seconds.items():
        print(f"  {name:30s} {s:7.3f} s  ({s / seconds['plain_raw']:.2f}x the plain tokenizer)")
    print(f"  tokenizer.json ids == Python-normalized ids: {same}")
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(os.path.join(args.output_dir, "bench_hf_normalizer.json"), out)
    return out


if __name__ == "__main__":
    main()

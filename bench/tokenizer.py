"""Benchmark: the seed paper's vocabulary merge vs ours, same corpus, same SentencePiece base, same add-on size.

    python bench/tokenizer.py [--base_vocab_size 4000] [--addon_vocab_size 2000] [--output_dir outputs/bench]

(a) seed: a unigram add-on trained with SentencePiece defaults, appended with its own scores, HF tokenizer
    converted from the merged tokenizer.model (Chinese-LLaMA's merge_tokenizers.py, as the Persian paper used it).
(b) ours: tokenizer/extract_vocab.py + tokenizer/merge.py logic: a BPE add-on with the base's trainer settings,
    target-script pieces only, scores below the lowest base merge, the base's tokenizer.json extended.
Corpus: demo/corpora.py's persian_corpus() (Hafez, ~12k lines), every 10th line held out; the base is an
English-centric SentencePiece BPE with Llama-2's settings trained on english_corpus() plus 1% Persian
lines (like Llama-2, the base then owns a few Persian pieces the add-on competes with). Goal (issue 2):
(b) has fewer Persian tokens per word than (a), >= 80% of new pieces used on held-out text, 0 English lines
changed, 0 HF/sentencepiece disagreements. Prints a table and writes <output_dir>/bench_tokenizer.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

# Tiny models and tokenizers (tests/tiny.py) and the real text they are trained on (demo/corpora.py) are test and
# demo code, not part of the shipped package: import them from their folders.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(_REPO, "tests"), os.path.join(_REPO, "demo")]


import tiny
from langadapt.cli import setup_logging
from langadapt.io import write_json
from langadapt.vocab import allowed_chars, extract_vocab, train_sentencepiece
from langadapt.vocab_merge import merge_sentencepiece, merge_sentencepiece_seed
from langadapt.vocab_report import eval_file_stats

logger = logging.getLogger("bench.tokenizer")
ARABIC = ("Arabic",)
# Chinese-LLaMA trained its add-on with SentencePiece's defaults (unigram, nmt_nfkc, coverage 0.9995).
SEED_SETTINGS = dict(model_type="unigram")


def measure(name: str, base_dir: str, merged_dir: str, new_range: tuple[int, int], fa: list[str], en: list[str],
            seconds: float) -> dict:
    """The bench's numbers for one merged tokenizer (HF tokenizer; sentencepiece for the disagreement count)."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    base, merged = AutoTokenizer.from_pretrained(base_dir), AutoTokenizer.from_pretrained(merged_dir)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(merged_dir, "tokenizer.model"))
    fa_stats, used = eval_file_stats(fa, base, merged, new_range, allowed_chars(ARABIC), sp)
    en_stats, _ = eval_file_stats(en, base, merged, new_range, allowed_chars(ARABIC), sp)
    return {
        "method": name, "seconds": round(seconds, 2), "new_pieces": new_range[1] - new_range[0],
        "fa_tokens_per_word_base": fa_stats["base_tokens_per_word"],
        "fa_tokens_per_word": fa_stats["merged_tokens_per_word"],
        "fa_bytes_per_token": fa_stats["merged_bytes_per_token"],
        "new_pieces_used_share": fa_stats["new_pieces_used_share"],
        "english_lines_changed": en_stats["changed_lines"], "english_lines": en_stats["lines"],
        "hf_sp_disagreements": fa_stats["hf_sp_disagreements"] + en_stats["hf_sp_disagreements"],
        "roundtrip_failures": fa_stats["roundtrip_failures"] + en_stats["roundtrip_failures"],
        "eval_lines": fa_stats["lines"] + en_stats["lines"],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base_vocab_size", type=int, default=4000, help="English SentencePiece base size")
    parser.add_argument("--addon_vocab_size", type=int, default=2000, help="Add-on size, the same for both methods")
    parser.add_argument("--base_persian_share", type=float, default=0.01,
                        help="Share of Persian lines (from the held-in split) in the base's training text: Llama-2 "
                             "saw a little Persian and has some Persian pieces the add-on competes with")
    parser.add_argument("--output_dir", default="outputs/bench", help="Where bench_tokenizer.json goes")
    args = parser.parse_args(argv)
    setup_logging()

    fa_all, en_all = list(tiny.persian_corpus()), list(tiny.english_corpus())
    fa_train = [x for i, x in enumerate(fa_all) if i % 10]
    fa_held = [x for i, x in enumerate(fa_all) if not i % 10]
    with tempfile.TemporaryDirectory() as work:
        n_fa = int(args.base_persian_share * len(en_all) / (1 - args.base_persian_share))
        base_dir = tiny.train_sp_tokenizer(en_all + fa_train[:n_fa], os.path.join(work, "base"),
                                           vocab_size=args.base_vocab_size)
        rows = []
        for name in ("seed: unigram add-on, scores copied", "ours: BPE add-on, base settings, merge.py"):
            extra_dir, out_dir = os.path.join(work, f"extra{len(rows)}"), os.path.join(work, f"merged{len(rows)}")
            os.makedirs(extra_dir)
            os.makedirs(out_dir)
            t0 = time.perf_counter()
            if name.startswith("seed"):
                data = train_sentencepiece(fa_train, args.addon_vocab_size, SEED_SETTINGS, num_threads=1, seed=42)
                extra = os.path.join(extra_dir, "extra.model")
                with open(extra, "wb") as f:
                    f.write(data)
                result = merge_sentencepiece_seed(base_dir, extra, out_dir)
            else:
                extract_vocab(fa_train, extra_dir, args.addon_vocab_size, base_dir, num_threads=1, seed=42)
                result = merge_sentencepiece(base_dir, os.path.join(extra_dir, "extra.model"), out_dir, ARABIC)
            seconds = time.perf_counter() - t0
            rows.append(measure(name, base_dir, out_dir, result.new_token_ids, fa_held, en_all, seconds))

    cols = [("method", "{:<42}"), ("new_pieces", "{:>6}"), ("fa_tokens_per_word", "{:>8.3f}"),
            ("new_pieces_used_share", "{:>9.1%}"), ("english_lines_changed", "{:>8}"),
            ("hf_sp_disagreements", "{:>8}"), ("roundtrip_failures", "{:>7}"), ("seconds", "{:>7.2f}")]
    heads = ["method", "new", "fa tok/w", "new used", "en chg", "HF!=sp", "rt fail", "seconds"]
    widths = [42, 6, 8, 9, 8, 8, 7, 7]
    print(f"base: English (+{args.base_persian_share:.0%} Persian) SentencePiece BPE, {args.base_vocab_size} pieces; "
          f"Persian tokens/word with the base: {rows[0]['fa_tokens_per_word_base']:.3f}; add-on size "
          f"{args.addon_vocab_size}; held out: {len(fa_held)} Persian lines; English: {len(en_all)} lines")
    print(" ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(heads, widths))))
    for r in rows:
        print(" ".join(fmt.format(r[key]) for key, fmt in cols))
    out = {"base_vocab_size": args.base_vocab_size, "addon_vocab_size": args.addon_vocab_size,
           "fa_train_lines": len(fa_train), "fa_heldout_lines": len(fa_held), "english_lines": len(en_all),
           "rows": rows}
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(os.path.join(args.output_dir, "bench_tokenizer.json"), out)
    return out


if __name__ == "__main__":
    main()

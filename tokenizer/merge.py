"""Merge the add-on vocabulary into the base tokenizer and audit the result (step 2 of vocabulary extension).

    python tokenizer/merge.py --base_tokenizer path/to/base_model --extra_model outputs/extra_vocab/extra.model \
        --output_dir outputs/tokenizer --eval_file heldout_fa.txt --eval_file heldout_en.txt

Writes a folder AutoTokenizer.from_pretrained loads (plus tokenizer.model on the SentencePiece path),
langadapt_tokenizer.json and langadapt_normalizer.json for later stages, and merge_report.json/.md/.png. The Persian
normalizer is also written into tokenizer.json (langadapt/hf_normalizer.py), so a plain AutoTokenizer on raw text
gives the ids langadapt gives.
Base ids never change; new ids follow every base id; text without target-script characters segments as before.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from langadapt.args.tokenizer import MergeArguments
from langadapt.cli import UsageError, parse_args, run_main
from langadapt.hf_normalizer import attach_normalizer
from langadapt.io import atomic_output_dir, check_output_dir, resolve_files
from langadapt.normalize import NormalizerConfig
from langadapt.vocab import byte_level_to_bytes, detect_extra_kind, detect_kind, validate_scripts
from langadapt.vocab_merge import merge_byte_level_bpe, merge_sentencepiece, write_metadata
from langadapt.vocab_report import build_report, write_report

logger = logging.getLogger("langadapt.merge")


def main(argv: Sequence[str] | None = None) -> dict:
    (args,) = parse_args((MergeArguments,), argv, description=__doc__)
    logger.info("arguments: %s", args)

    # 1. Check every input before writing anything.
    check_output_dir(args.output_dir, args.overwrite)
    kind = detect_kind(args.base_tokenizer)
    extra_kind, extra_path = detect_extra_kind(args.extra_model)
    if extra_kind != kind:
        raise UsageError(f"--extra_model: {extra_path} is a {extra_kind} add-on but the base is {kind}; re-run "
                         f"extract_vocab.py with --base_tokenizer {args.base_tokenizer}")
    scripts = validate_scripts(args.scripts)
    eval_files = resolve_files(args.eval_file, "eval_file") if args.eval_file else []
    # The add-on was trained on text normalized this way; later stages must normalize the same way.
    normalizer = NormalizerConfig.from_dir(os.path.dirname(os.path.abspath(extra_path)))

    # 2. Merge, save, audit: all inside a temporary folder renamed to --output_dir on success.
    merge = merge_sentencepiece if kind == "sentencepiece" else merge_byte_level_bpe
    with atomic_output_dir(args.output_dir, args.overwrite) as tmp:
        result = merge(args.base_tokenizer, extra_path, tmp, scripts, args.max_new_pieces)
        write_metadata(tmp, args.base_tokenizer, result)
        normalizer.save(tmp)
        attach_normalizer(tmp, normalizer)  # plain AutoTokenizer users get the ids training sees
        pieces = result.new_pieces if kind == "sentencepiece" else [
            byte_level_to_bytes(t).decode("utf-8", "ignore") for t in result.new_pieces]
        report = build_report(args.base_tokenizer, tmp, result.summary(), eval_files, normalizer, scripts, pieces,
                              args.text_field)
        write_report(tmp, report)
    logger.info("vocabulary %d -> %d (%d new pieces, ids %d..%d); dropped %s; report in %s",
                result.base_vocab_size, result.vocab_size, len(result.new_pieces), result.new_token_ids[0],
                result.new_token_ids[1] - 1, result.dropped, os.path.join(args.output_dir, "merge_report.md"))
    return report


if __name__ == "__main__":
    run_main(main)

"""Score prediction folders written by inference/inference.py, or compare several (one row per stage).

    python inference/score.py --predictions_dir outputs/predictions/sft        # -> scores.json, scores.md there
    python inference/score.py --compare base=outputs/predictions/base pt=outputs/predictions/pt \\
        sft=outputs/predictions/sft --output_dir outputs/comparison           # -> comparison.{md,json,png}
    python inference/score.py --compare base=... sft=... --lm_eval base=outputs/lm_eval/base sft=outputs/lm_eval/sft \\
        --output_dir outputs/comparison                                      # + lm-eval benchmark columns

The task of each file comes from its name (entailment, multiple_choice, sentiment, summary/summarization,
translation_xx_yy) or --task. Metrics and label handling: langadapt/metrics.py.
"""

from __future__ import annotations

import logging
import os

from langadapt.args.inference import ScoreArguments
from langadapt.cli import UsageError, parse_args, run_main
from langadapt.compare import (comparison, comparison_chart, comparison_markdown, merge_stages, score_folder,
                               scores_markdown)
from langadapt.coverage import check_complete
from langadapt.io import atomic_output_dir, write_json, write_text

logger = logging.getLogger("score")


def main(argv=None) -> dict:
    (args,) = parse_args((ScoreArguments,), argv, description=__doc__)

    # One folder: scores.json (for tools) and scores.md (for people) beside the predictions.
    if args.predictions_dir:
        if not args.allow_incomplete and os.path.isdir(args.predictions_dir):
            check_complete(args.predictions_dir)
        scores = score_folder(args.predictions_dir, args.task, args.bleu_tokenize)
        write_json(os.path.join(args.predictions_dir, "scores.json"), scores)
        write_text(os.path.join(args.predictions_dir, "scores.md"), scores_markdown(scores))
        logger.info("wrote %s/scores.json and scores.md (%d files)", args.predictions_dir, len(scores))
        return scores

    # Several folders: score each (all of them before writing anything), then one table, JSON and chart.
    stages = []
    for item in args.compare:
        name, directory = item.split("=", 1)
        if not args.allow_incomplete and os.path.isdir(directory):
            check_complete(directory, arg="compare")
        stages.append((name, score_folder(directory, args.task, args.bleu_tokenize, flag=f"--compare {name}")))
    if args.lm_eval:
        from langadapt.errors import InputError
        from langadapt.lm_eval_tasks import read_summary, stage_scores

        more = []
        for item in args.lm_eval:
            name, directory = item.split("=", 1)
            try:
                more.append((name, stage_scores(read_summary(directory))))
            except InputError as e:
                raise UsageError(f"--lm_eval {name}: {e.message}") from None
        stages = merge_stages(stages, more)
    table = comparison(stages)
    with atomic_output_dir(args.output_dir, args.overwrite_output_dir) as out:
        write_json(os.path.join(out, "comparison.json"), table)
        write_text(os.path.join(out, "comparison.md"), comparison_markdown(table))
        comparison_chart(table, os.path.join(out, "comparison.png"))
    logger.info("wrote %s/comparison.{md,json,png}: %d stages x %d columns", args.output_dir, len(stages),
                len(table["columns"]))
    return table


if __name__ == "__main__":
    run_main(main)

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
from dataclasses import dataclass, field

from langadapt.cli import UsageError, parse_args, run_main
from langadapt.compare import (comparison, comparison_chart, comparison_markdown, merge_stages, score_folder,
                               scores_markdown)
from langadapt.coverage import check_complete
from langadapt.evaldata import TASKS
from langadapt.io import atomic_output_dir, write_json, write_text
from langadapt.metrics import BLEU_TOKENIZERS

logger = logging.getLogger("score")


@dataclass
class ScoreArguments:
    """Which predictions to score and how."""

    predictions_dir: str | None = field(default=None, metadata={
        "help": "Prediction folder to score; writes scores.json and scores.md into it."})
    compare: list[str] | None = field(default=None, metadata={
        "help": "Several NAME=DIR prediction folders, in row order (e.g. base=... pt=... sft=...).",
        "nargs": "+"})
    lm_eval: list[str] | None = field(default=None, metadata={
        "help": "With --compare: NAME=DIR output folders of inference/lm_eval.py; each one's headline rows become "
                "columns of stage NAME's row (a new row when --compare has no NAME).", "nargs": "+"})
    output_dir: str | None = field(default=None, metadata={"help": "Where --compare writes comparison.*."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing --output_dir.",
                                                     "aliases": ["--overwrite_output_dir"]})
    allow_incomplete: bool = field(default=False, metadata={
        "help": "Score prediction folders that miss records of the test set named in their run_args.json (a "
                "killed or running inference job); without it they are refused."})
    task: str | None = field(default=None, metadata={
        "help": f"Task of every file ({', '.join(TASKS)}) when the file names do not say."})
    bleu_tokenize: str | None = field(default=None, metadata={
        "help": f"sacrebleu tokenizer ({', '.join(BLEU_TOKENIZERS)}); default 13a for Latin-script references, "
                "intl otherwise."})

    def __post_init__(self) -> None:
        if bool(self.predictions_dir) == bool(self.compare):
            raise ValueError("pass either --predictions_dir DIR or --compare NAME=DIR ... (with --output_dir)")
        if self.compare:
            if not self.output_dir:
                raise ValueError("--compare needs --output_dir")
            bad = [c for c in self.compare if c.count("=") < 1 or not c.split("=", 1)[0] or not c.split("=", 1)[1]]
            if bad:
                raise ValueError(f"--compare: {bad[0]!r} is not NAME=DIR (e.g. sft=outputs/predictions/sft)")
            names = [c.split("=", 1)[0] for c in self.compare]
            if len(set(names)) != len(names):
                raise ValueError(f"--compare: stage names must be distinct, got {names}")
        if self.lm_eval:
            if not self.compare:
                raise ValueError("--lm_eval goes with --compare (it adds columns to the comparison table)")
            bad = [c for c in self.lm_eval if "=" not in c or not all(c.split("=", 1))]
            if bad:
                raise ValueError(f"--lm_eval: {bad[0]!r} is not NAME=DIR (e.g. sft=outputs/lm_eval/sft)")
        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"--task: unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.bleu_tokenize is not None and self.bleu_tokenize not in BLEU_TOKENIZERS:
            raise ValueError(f"--bleu_tokenize: {self.bleu_tokenize!r} is not one of {BLEU_TOKENIZERS} "
                             "(the others download a model)")


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
    with atomic_output_dir(args.output_dir, args.overwrite) as out:
        write_json(os.path.join(out, "comparison.json"), table)
        write_text(os.path.join(out, "comparison.md"), comparison_markdown(table))
        comparison_chart(table, os.path.join(out, "comparison.png"))
    logger.info("wrote %s/comparison.{md,json,png}: %d stages x %d columns", args.output_dir, len(stages),
                len(table["columns"]))
    return table


if __name__ == "__main__":
    run_main(main)

"""The bundled default, end to end: SmolLM2-135M-Instruct learns Persian on 2 CPU cores, offline, with a report.

    .venv/bin/python demo/run_demo.py            # what `make demo` runs (settings: configs/recipes/demo.env)
    .venv/bin/python demo/run_demo.py --quick    # CI-sized (the recipe's QUICK overrides)
    .venv/bin/python demo/run_demo.py --set PRETRAIN_MAX_STEPS=80 --set RUN_DIR=outputs/demo-80

Phases: (1) prepare the base model and data once (data/prepare_demo_data.py; cached), (2) run the recipe with
`slurm/pipeline.sh --local` (tokenizer -> pretrain -> bilingual -> sft -> merge, evaluations of the base model and after each
stage; the same launchers and flags as on a cluster), (3) the report: RUN_DIR/report.md, printed at the end.
Running it again resumes: finished steps are skipped, an interrupted training stage resumes from its checkpoint.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field

import demo
from langadapt.cli import UsageError, parse_args, run_main

logger = logging.getLogger("langadapt.demo")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class DemoArguments:
    """Which recipe, and how to run it."""

    recipe: str = field(default=os.path.join(REPO, "configs", "recipes", "demo.env"),
                        metadata={"help": "Recipe file (bash variables; format: top of slurm/pipeline.sh)."})
    quick: bool = field(default=False, metadata={"help": "Apply the recipe's QUICK overrides (a CI-sized run)."})
    set: list[str] = field(
        default_factory=list,
        metadata={"help": "VAR=value overrides of the recipe (--set A=1 B=2, or --set A=1 --set B=2).", "nargs": "+",
                  "action": "extend"},
    )
    fresh: bool = field(default=False, metadata={"help": "Delete RUN_DIR first and redo every step."})


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    logger.info("%s: %s", what, " ".join(cmd))
    rc = subprocess.call(cmd, cwd=REPO, env=env or demo.offline_env())
    if rc != 0:
        raise UsageError(f"{what} failed (exit status {rc}); the messages above say why. Fix it and rerun: "
                         "finished steps are kept")


def main(argv=None) -> str:
    (args,) = parse_args((DemoArguments,), argv, description=__doc__)
    start = time.time()

    # 1. Settings: the recipe, the QUICK overrides with --quick, then --set; the run folder must match them.
    settings = demo.resolve_settings(args.recipe, args.quick, args.set)
    run_dir = os.path.join(REPO, settings["RUN_DIR"]) if not os.path.isabs(settings["RUN_DIR"]) else settings["RUN_DIR"]
    demo.check_run_dir(run_dir, settings, args.fresh)
    logger.info("recipe %s%s -> %s", args.recipe, " (quick)" if args.quick else "", run_dir)

    # 2. Base model and data, once (cached under CACHE_DIR; reused in about a second).
    t = time.time()
    _run([sys.executable, os.path.join(REPO, "data", "prepare_demo_data.py"), *demo.prepare_args(settings)],
         "prepare model and data")
    demo.record_step_seconds(run_dir, "prepare", time.time() - t)

    # 3. The chain, through the launchers (one log per step in LOG_DIR, progress on the terminal).
    demo.clean_unfinished_stages(run_dir, settings.get("STAGES", "").split())
    overrides = dict(kv.split("=", 1) for kv in shlex.split(settings["_OVERRIDES"]))
    if overrides:
        logger.info("overrides: %s", settings["_OVERRIDES"])
    _run(["bash", os.path.join(REPO, "slurm", "pipeline.sh"), "--local", args.recipe], "pipeline",
         demo.offline_env(overrides, recipe_vars=list(settings)))

    # 4. The report again, now that the whole command's wall time is known; printed at the end.
    demo.record_wall_time(run_dir, time.time() - start, demo.host_description())
    _run([sys.executable, os.path.join(REPO, "inference", "report.py"), "--run_dir", run_dir, "--output_dir", run_dir,
          "--quiet"], "report")
    with open(os.path.join(run_dir, "report.md"), encoding="utf-8") as f:
        text = f.read()
    print(text)
    print(f"Goals:\n{demo.goals_summary(os.path.join(run_dir, 'report.json'))}")
    minutes = (time.time() - start) / 60
    print(f"Report: {os.path.join(run_dir, 'report.md')} (charts beside it); total {minutes:.1f} min")
    return text


if __name__ == "__main__":
    run_main(main)

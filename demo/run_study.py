"""The adaptation study: the arms of a study file at an equal text budget, compared in bits per byte.

    .venv/bin/python demo/run_study.py --local                 # what `make study` runs (configs/studies/adaptation.yaml)
    .venv/bin/python demo/run_study.py --local --arms extend no_extension   # some arms only
    .venv/bin/python demo/run_study.py                         # Slurm: every unfinished arm as its own job chain
    .venv/bin/python demo/run_study.py --collect               # after the jobs: study.md / study.json / charts

Phases: (1) read the study file and its base recipe; prepare the demo's model and data when the recipe is the demo's
(data/prepare_demo_data.py, cached); (2) the equal text budget, once (<study_dir>/text); (3) each unfinished arm:
`slurm/pipeline.sh` on the recipe with the arm's overrides (--local: in turn, here; otherwise submitted), then,
locally, its generation speed and its numbers (<arm>/study_arm.json, written last: a finished arm is never rerun);
(4) study.json, study.md with the verdict, PNG charts in <study_dir>. Format of the study file: langadapt/study.py.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field

import demo
from langadapt import study
from langadapt.cli import UsageError, parse_args, run_main
from langadapt.errors import InputError
from langadapt.io import read_json, write_json

logger = logging.getLogger("langadapt.study")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Results an arm can take from an earlier arm with the same tokenizer and evaluation settings (they do not depend
# on the arm's training): the tokenizer stage and the base model's evaluation.
SHARED = ("tokenizer", "tokenizer.addon", "perplexity/base", "predictions/base")


@dataclass
class StudyArguments:
    """Which study, which arms, where they run."""

    study: str = field(default=os.path.join(REPO, "configs", "studies", "adaptation.yaml"),
                       metadata={"help": "Study file (YAML; format in langadapt/study.py)."})
    local: bool = field(default=False, metadata={"help": "Run the arms here, one after another (else: Slurm)."})
    collect: bool = field(default=False, metadata={"help": "Only write study.md/json and charts from finished arms."})
    arms: list[str] = field(default_factory=list, metadata={"help": "Run only these arms.", "nargs": "+"})


def share_results(st: study.Study, arm: str, overrides: dict[str, dict[str, str]]) -> None:
    """Copy the tokenizer and base evaluation from a finished arm with the same TOKENIZER_/EVAL_ settings."""
    def key(a):
        return {k: v for k, v in overrides[a].items() if k.startswith(("TOKENIZER_", "EVAL_", "BASE_MODEL"))}

    dst = study.arm_dir(st, arm)
    for other in overrides:
        src = study.arm_dir(st, other)
        if other == arm or key(other) != key(arm) or not os.path.isfile(os.path.join(src, study.ARM_DONE)):
            continue
        for rel in SHARED:
            if os.path.isdir(os.path.join(src, rel)) and not os.path.exists(os.path.join(dst, rel)):
                shutil.copytree(os.path.join(src, rel), os.path.join(dst, rel))
        return


def run_arm(st: study.Study, arm: str, overrides: dict[str, str], local: bool) -> float:
    """The arm's pipeline (--local: here, waited for); returns the peak RSS of its processes in MB."""
    run_dir = study.arm_dir(st, arm)
    os.makedirs(run_dir, exist_ok=True)
    demo.clean_unfinished_stages(run_dir, overrides.get("STAGES", "").split())
    # VAR=value arguments override the recipe whether or not it reads the environment (pipeline.sh's contract).
    cmd = ["bash", os.path.join(REPO, "slurm", "pipeline.sh"), *(["--local"] if local else []), st.recipe,
           *(f"{k}={v}" for k, v in overrides.items())]
    logger.info("arm %s: %s", arm, " ".join(shlex.quote(c) for c in cmd))
    proc = subprocess.Popen(cmd, cwd=REPO, env=demo.offline_env())
    _, status, usage = os.wait4(proc.pid, 0)  # rusage of the pipeline and every process it waited for
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise UsageError(f"arm {arm}: the pipeline failed (exit status {rc}); its logs are in "
                         f"{overrides['LOG_DIR']}. Fix it and rerun: finished arms and steps are kept")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def load_final(base_model: str, stage_dir: str):
    from langadapt.loading import load_with_adapters
    from langadapt.metadata import is_adapter_dir

    if is_adapter_dir(stage_dir):
        return load_with_adapters(base_model, [stage_dir])
    return load_with_adapters(stage_dir, [])


def main(argv=None) -> dict:
    (args,) = parse_args((StudyArguments,), argv, description=__doc__)
    start = time.time()

    # 1. The study, its recipe, the demo's model and data.
    try:
        st = study.load_study(args.study, root=REPO)
    except InputError as e:
        raise UsageError(e.render("--study")) from None
    unknown = [a for a in args.arms if a not in st.arms]
    if unknown:
        raise UsageError(f"--arms: {', '.join(unknown)} not in {args.study} (arms: {', '.join(st.arms)})")
    settings = demo.read_recipe(st.recipe, list(st.set.items()))
    if not settings.get("BASE_MODEL"):
        raise UsageError(f"--study: its recipe {st.recipe} sets no BASE_MODEL")
    if settings.get("DEMO_DATA") and not args.collect:
        demo_args = demo.prepare_args(settings)
        rc = subprocess.call([sys.executable, os.path.join(REPO, "data", "prepare_demo_data.py"), *demo_args],
                             cwd=REPO, env=demo.offline_env())
        if rc != 0:
            raise UsageError(f"preparing the demo model and data failed (exit status {rc})")
    try:
        study.check_inputs(st)
    except InputError as e:
        raise UsageError(e.render("--study")) from None

    # 2. The equal text budget, written once.
    text = study.prepare_text(st)
    logger.info("study text: %s characters (%s)", f"{text['chars']['all']:,}", st.study_dir)

    # 3. The arms: unfinished ones run (or are submitted); finished ones are read back.
    chosen = args.arms or list(st.arms)
    overrides = {a: study.arm_overrides(st, st.arms[a]) for a in st.arms}
    base_model = settings["BASE_MODEL"] if os.path.isabs(settings["BASE_MODEL"]) else \
        os.path.join(REPO, settings["BASE_MODEL"])
    prompts = study.speed_prompts(st.heldout["fa"], st.speed_prompts)
    arms = {}
    for arm in chosen:
        done = os.path.join(study.arm_dir(st, arm), study.ARM_DONE)
        if os.path.isfile(done):
            arms[arm] = read_json(done)
            continue
        stages = overrides[arm]["STAGES"].split()
        rss = None  # known only for an arm trained here (a Slurm job's memory is in sacct's MaxRSS)
        finished = study.pipeline_finished(study.arm_dir(st, arm), stages)
        if not finished and args.collect:
            logger.warning("arm %s is not finished; left out", arm)
            continue
        # --local runs a finished chain again too: the pipeline redoes only the steps whose settings changed (an
        # evaluation fixed since), in seconds when none did.
        if not args.collect and (not finished or args.local):
            share_results(st, arm, overrides)
            peak = run_arm(st, arm, overrides[arm], args.local)
            rss = None if finished else peak  # a rechecked chain's peak is not its training's
            if not args.local:
                continue
        model, tokenizer = load_final(base_model, os.path.join(study.arm_dir(st, arm), stages[-1]))
        speed = study.generation_speed(model, tokenizer, prompts, st.speed_new_tokens)
        del model
        arms[arm] = study.collect_arm(study.arm_dir(st, arm), stages, speed, rss)
        write_json(done, arms[arm])
    if not args.local and not args.collect:
        print(f"Submitted. When the jobs are done: {sys.executable} demo/run_study.py --study {args.study} --collect")
        return {}

    # 4. Base model numbers, the comparison, the outputs.
    base_path = os.path.join(st.study_dir, "base.json")
    if os.path.isfile(base_path):
        base = read_json(base_path)
    else:
        from langadapt.loading import load_with_adapters

        model, tokenizer = load_with_adapters(base_model, [])
        speed = study.generation_speed(model, tokenizer, prompts, st.speed_new_tokens)
        files = next((study._ppl(study.arm_dir(st, a), "base") for a in arms), {})
        base = {"fa_bpb": files.get("fa", {}).get("bpb"), "en_bpb": files.get("en", {}).get("bpb"),
                "fa_words_per_s": speed["words_per_s"], "fa_tokens_per_s": speed["tokens_per_s"]}
        write_json(base_path, base)
    result = {"name": os.path.splitext(os.path.basename(args.study))[0], "default_arm": st.default_arm,
              "text_chars": text["chars"]["all"], "arms": arms, "base": base}
    md = study.write_outputs(result, st.study_dir)
    print(md)
    print(f"Study: {os.path.join(st.study_dir, 'study.md')}; {(time.time() - start) / 60:.1f} min")
    return result


if __name__ == "__main__":
    run_main(main)

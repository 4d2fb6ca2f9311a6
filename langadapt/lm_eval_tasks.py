"""lm-evaluation-harness integration: our test sets as offline lm-eval tasks, a normalizing HF model, summary rows.

Our test sets (``.json``/``.jsonl`` records ``{instruction, input, output}``, see :mod:`langadapt.evaldata`) become
one lm-eval task per file (:func:`write_task_folder`): a YAML beside a local ``.jsonl`` data file
(``dataset_path: json`` + ``dataset_kwargs.data_files``), so nothing is read from the hub. ``fa/sentiment.json``
becomes the task ``langadapt_fa_sentiment``; every task is tagged ``langadapt`` and ``langadapt_<folder>``.

* The prompt of a record is :func:`langadapt.templates.build_prompt` of its instruction and input, exactly what
  ``inference/inference.py`` sends.
* Classification files (entailment, sentiment, multiple choice) are ``multiple_choice`` tasks: the choices are the
  file's gold labels, one spelling each (:func:`langadapt.generation.label_candidates`, as ``--scoring loglik``
  picks them), appended to the prompt with no delimiter, and the answer is the choice with the highest summed
  log-likelihood. Metrics: ``accuracy`` and ``macro_f1`` (0-100), computed by :mod:`langadapt.metrics` on the
  chosen label exactly as ``inference/score.py`` scores a prediction file.
* Generation files (summary, translation) are ``generate_until`` tasks (greedy, the template's stop strings, the
  task's new-token cap and our repetition penalty) scored with our Persian-safe ``rouge1/rouge2/rougeL/chrf/bleu``
  (:func:`langadapt.metrics.generation_scores`, corpus-level, 0-100).

:func:`make_lm` wraps an already-loaded model (base, adapter chain or merged) in lm-eval's ``HFLM`` and normalizes
every request text with the tokenizer's Persian normalizer first, as training saw its text. lm-eval itself is
imported only inside functions, so the rest of the package does not need it.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from langadapt.compare import HEADLINE
from langadapt.errors import InputError
from langadapt.evaldata import (CLASSIFICATION_TASKS, TASKS, file_key, language_of, list_testsets, load_testset,
                                task_of)
from langadapt.generation import DecodingOptions, cut_at_stop, default_max_new_tokens, label_candidates
from langadapt.metrics import canonical_label, classification_scores, extract_label, generation_scores
from langadapt.normalize import NormalizerConfig, normalize
from langadapt.templates import build_prompt, stop_strings

logger = logging.getLogger(__name__)

TASK_PREFIX = "langadapt"
SUMMARY_FILE = "lm_eval_summary.json"
CLASSIFICATION_METRICS = ("accuracy", "macro_f1")
GENERATION_METRICS = ("rouge1", "rouge2", "rougeL", "chrf", "bleu")
# lm-eval metrics reported as a fraction (0-1); the comparison table shows them x100 like ours.
FRACTION_METRICS = frozenset({"acc", "acc_norm", "exact_match", "f1", "mcc", "brier_score"})
# Metric a column of the comparison table shows for a task that is not ours, in order of preference.
HEADLINE_PREFERENCE = ("accuracy", "acc", "exact_match", "acc_norm", "f1", "bleu", "chrf", "rougeL")
_MODULE = __name__


@dataclass(frozen=True)
class TaskSpec:
    """One generated lm-eval task: its name, the test file it came from, its family and size."""

    name: str
    source: str
    task: str
    n: int
    tags: tuple[str, ...] = ()


def task_name(key: str, prefix: str = TASK_PREFIX) -> str:
    """lm-eval task name of a test file key: ``fa/sentiment`` -> ``langadapt_fa_sentiment``."""
    return f"{prefix}_" + re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")


def _yaml(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(obj, allow_unicode=True, sort_keys=False, width=10_000)


def write_task_folder(data_dir: str, out_dir: str, template: str = "alpaca", tokenizer=None,
                      data_location: str | None = None, prefix: str = TASK_PREFIX,
                      repetition_penalty: float = DecodingOptions.repetition_penalty) -> list[TaskSpec]:
    """Turn every test file under ``data_dir`` into an lm-eval task in ``out_dir`` (a YAML and a ``.jsonl`` each).

    ``template`` (and ``tokenizer`` for ``chat``) builds the prompts. ``data_location`` is the folder the YAMLs
    name as the data files' home (default ``out_dir``; pass the final place when ``out_dir`` is moved later).
    A file whose task cannot be told from its name, or a record without a gold ``output``, is an
    :class:`InputError` naming the file. Returns the tasks written, in file order.
    """
    files = list_testsets(data_dir)
    location = os.path.abspath(data_location or out_dir)
    specs: list[TaskSpec] = []
    seen: dict[str, str] = {}
    pending: list[tuple[str, str, dict]] = []
    for path in files:
        key = file_key(path, data_dir)
        family = task_of(key)
        if family is None:
            raise InputError(f"{path}: cannot tell the task from the file name; name it after one of "
                             f"{', '.join(TASKS)} (e.g. fa/sentiment.json, translation_en_fa.json) or move it out "
                             f"of the test folder", arg="data_dir", value=path)
        examples = load_testset(path)
        missing = [ex.id for ex in examples if ex.gold is None]
        if missing:
            raise InputError(f"{path}: records {missing[:5]} have no gold \"output\"; lm-eval tasks need labeled "
                             "test sets", arg="data_dir", value=path)
        name = task_name(key, prefix)
        if name in seen:
            raise InputError(f"{path} and {seen[name]} both become the lm-eval task {name}; rename one",
                             arg="data_dir", value=path)
        seen[name] = path
        prompts = [build_prompt(ex.instruction, ex.input, template, tokenizer) for ex in examples]
        lang = language_of(key)
        tags = [prefix] + ([task_name(lang, prefix)] if lang else [])
        config: dict[str, Any] = {
            "task": name,
            "tag": tags,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": os.path.join(location, f"{name}.jsonl")}},
            "test_split": "test",
            "doc_to_text": "prompt",
            "target_delimiter": "",
            "fewshot_delimiter": "\n\n",
        }
        if family in CLASSIFICATION_TASKS:
            empty = [ex.id for ex in examples if canonical_label(ex.gold) is None]
            if empty:
                raise InputError(f"{path}: records {empty[:5]} have an empty gold label", arg="data_dir", value=path)
            choices = label_candidates(examples, canonical_label)
            keys = [canonical_label(c) for c in choices]
            labels = sorted(set(keys))
            records = [{"id": ex.id, "prompt": p, "answer": ex.gold, "choices": choices,
                        "gold": keys.index(canonical_label(ex.gold)), "labels": labels}
                       for ex, p in zip(examples, prompts)]
            config.update({
                "output_type": "multiple_choice",
                "doc_to_choice": "choices",
                "doc_to_target": "gold",
                "process_results": f"!function {_MODULE}.process_classification",
                "metric_list": [
                    {"metric": "accuracy", "aggregation": "mean", "higher_is_better": True},
                    {"metric": "macro_f1", "aggregation": f"!function {_MODULE}.aggregate_macro_f1",
                     "higher_is_better": True},
                ],
            })
        else:
            stops = stop_strings(template, tokenizer)
            records = [{"id": ex.id, "prompt": p, "answer": str(ex.gold), "stops": stops}
                       for ex, p in zip(examples, prompts)]
            gen = {"until": stops, "max_gen_toks": default_max_new_tokens(family), "do_sample": False}
            if repetition_penalty != 1.0:
                gen["repetition_penalty"] = repetition_penalty
            config.update({
                "output_type": "generate_until",
                "doc_to_target": "answer",
                "generation_kwargs": gen,
                "process_results": f"!function {_MODULE}.process_generation",
                "metric_list": [{"metric": m, "aggregation": f"!function {_MODULE}.aggregate_{m}",
                                 "higher_is_better": True} for m in GENERATION_METRICS],
            })
        config["metadata"] = {"version": 1.0, "source": os.path.abspath(path), "family": family,
                              "template": template}
        pending.append((name, _yaml(config), {"records": records}))
        specs.append(TaskSpec(name, os.path.abspath(path), family, len(examples), tuple(tags)))
    os.makedirs(out_dir, exist_ok=True)
    for name, text, data in pending:
        # lm-eval's loader resolves ``!function``; safe_dump quotes it as a plain string, so unquote the tag.
        text = re.sub(r"'(!function [\w.]+)'", r"\1", text)
        with open(os.path.join(out_dir, f"{name}.yaml"), "w", encoding="utf-8") as f:
            f.write(text)
        with open(os.path.join(out_dir, f"{name}.jsonl"), "w", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data["records"]))
    logger.info("wrote %d lm-eval tasks to %s", len(specs), out_dir)
    return specs


# ------------------------------------------------------------------------------------- hooks lm-eval calls


def classification_choice(doc: dict, results: Sequence) -> str:
    """The choice with the highest log-likelihood (the first one on a tie, as ``--scoring loglik`` does)."""
    lls = [float(r[0]) for r in results]
    return doc["choices"][max(range(len(lls)), key=lls.__getitem__)]


def process_classification(doc: dict, results: Sequence) -> dict[str, Any]:
    """Per-record metrics of a classification task: 0/100 ``accuracy`` and the (gold, chosen) pair for macro-F1."""
    choice = classification_choice(doc, results)
    correct = extract_label(choice, doc["labels"]) == canonical_label(doc["answer"])
    return {"accuracy": 100.0 * correct, "macro_f1": (doc["answer"], choice)}


def aggregate_macro_f1(items: Sequence[tuple[Any, str]]) -> float:
    """Macro-F1 (0-100) over the file's gold label set, as ``inference/score.py`` computes it."""
    golds, preds = zip(*items) if items else ((), ())
    return classification_scores(list(golds), list(preds))["macro_f1"]


def generation_output(doc: dict, response: str) -> str:
    """A generated response as ``inference/inference.py`` stores it: cut at the first stop string, stripped."""
    return cut_at_stop(response, doc.get("stops") or [])


def process_generation(doc: dict, results: Sequence[str]) -> dict[str, Any]:
    """Per-record (gold, output) pairs; the corpus metrics are computed in the aggregations."""
    pair = (doc["answer"], generation_output(doc, results[0]))
    return {m: pair for m in GENERATION_METRICS}


@lru_cache(maxsize=8)
def _generation_scores(items: tuple[tuple[str, str], ...]) -> dict[str, float]:
    return generation_scores([g for g, _ in items], [p for _, p in items])


def _aggregate(metric: str, items) -> float:
    return _generation_scores(tuple((str(g), str(p)) for g, p in items))[metric]


def aggregate_rouge1(items) -> float:
    return _aggregate("rouge1", items)


def aggregate_rouge2(items) -> float:
    return _aggregate("rouge2", items)


def aggregate_rougeL(items) -> float:  # noqa: N802 - the metric's name
    return _aggregate("rougeL", items)


def aggregate_chrf(items) -> float:
    return _aggregate("chrf", items)


def aggregate_bleu(items) -> float:
    return _aggregate("bleu", items)


# ------------------------------------------------------------------------------------- task names


def make_task_manager(names: Sequence[str], paths: Sequence[str]):
    """lm-eval's task index over ``paths`` (our generated folder, the user's task folders), plus lm-eval's own
    tasks unless those folders define every name (indexing lm-eval's ~15k tasks takes tens of seconds)."""
    from lm_eval.tasks import TaskManager

    paths = [str(p) for p in paths]
    if paths:
        local = TaskManager(include_path=paths, include_defaults=False)
        if all(n in set(local.all_tasks) for n in names):
            return local
    return TaskManager(include_path=paths or None, include_defaults=True)


def check_task_names(names: Sequence[str], known: Sequence[str]) -> None:
    """Every name must be an lm-eval task, group or tag; an unknown one is an error listing the close matches."""
    known_set = set(known)
    for name in names:
        if name in known_set:
            continue
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        hint = f"close matches: {', '.join(close)}" if close else \
            "list them with `lm-eval ls tasks`, or pass --data_dir for our own test sets (tasks langadapt_*)"
        raise InputError(f"unknown lm-eval task {name!r}; {hint}", arg="tasks", value=name)


def hub_is_off() -> bool:
    """Whether the Hugging Face hub is switched off for datasets in this process."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def is_hub_error(error: BaseException) -> bool:
    """Whether loading a task failed because its dataset is on the hub and the hub cannot be reached."""
    text = f"{type(error).__name__}: {error}"
    return isinstance(error, ConnectionError) or any(
        s in text for s in ("OfflineModeIsEnabled", "Couldn't reach", "LocalEntryNotFoundError", "offline mode"))


def hub_error_message(name: str, error: BaseException) -> str:
    """The one line a user sees when a hub-only task cannot load its data here."""
    m = re.search(r"Couldn't reach '([^']+)'", str(error))
    dataset = f" (dataset {m.group(1)})" if m else ""
    return (f"task {name}{dataset} needs its data from the Hugging Face hub, which is off or unreachable here "
            f"({type(error).__name__}); run it where the hub is reachable, or fill HF_HOME's datasets cache there "
            "first and run offline with that cache (README, \"Standard benchmarks\")")


def load_tasks(names: Sequence[str], task_manager) -> None:
    """Build every task once before the model loads, so a task that cannot get its data fails in seconds."""
    for name in names:
        try:
            task_manager.load_task_or_group([name])
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to build a task is reported with the task's name
            if is_hub_error(e):
                raise InputError(hub_error_message(name, e), arg="tasks", value=name) from None
            raise


# ------------------------------------------------------------------------------------- the model


def load_model(base_model: str, adapters: Sequence[str], tokenizer_path: str | None, torch_dtype: str = "auto",
               device: str | None = None):
    """Model (eval mode, on ``device``) and tokenizer, built by langadapt's one loader exactly as inference does:
    the base, each adapter of the chain merged in order with its embedding rows, or a merged folder."""
    import torch

    from langadapt.generation import load_model as load

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return load(base_model, list(adapters), tokenizer_path, torch_dtype, device)


def normalizer_of(tokenizer) -> NormalizerConfig:
    """The normalizer saved beside the tokenizer (``langadapt_normalizer.json``), else the Persian default, as
    inference uses it."""
    return NormalizerConfig.from_dir(tokenizer.name_or_path or ".", default=NormalizerConfig())


def make_lm(model, tokenizer, normalizer: NormalizerConfig | None, batch_size: int = 8,
            max_length: int | None = None):
    """lm-eval's ``HFLM`` around a loaded model; every request's text is normalized with ``normalizer`` first.

    ``normalizer=None`` sends the text unchanged (plain lm-eval, as papers report it).
    """
    from lm_eval.models.huggingface import HFLM

    class NormalizingHFLM(HFLM):
        """HFLM that normalizes contexts and continuations the way the model's training text was normalized."""

        def _normalized(self, requests):
            if normalizer is not None:
                for r in requests:
                    r.arguments = tuple(normalize(a, normalizer) if isinstance(a, str) else a for a in r.args)
            return requests

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood(self._normalized(requests), disable_tqdm=disable_tqdm)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood_rolling(self._normalized(requests), disable_tqdm=disable_tqdm)

        def generate_until(self, requests, disable_tqdm: bool = False):
            return super().generate_until(self._normalized(requests), disable_tqdm=disable_tqdm)

    return NormalizingHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length)


# ------------------------------------------------------------------------------------- results


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


def _task_sizes(results: dict) -> dict[str, int]:
    sizes = {t: int(s.get("effective", s.get("original", 0))) for t, s in results.get("n-samples", {}).items()}

    def size(name: str, seen: frozenset = frozenset()) -> int:
        if name in sizes:
            return sizes[name]
        children = results.get("group_subtasks", {}).get(name, [])
        return sum(size(c, seen | {name}) for c in children if c not in seen)

    names = set(results.get("results", {})) | set(results.get("groups", {}))
    return {n: size(n) for n in names}


def summary_rows(results: dict) -> list[dict[str, Any]]:
    """One row per (task, metric) of lm-eval's results: ``{task, metric, value, stderr, n, headline}``.

    ``value`` and ``stderr`` are as lm-eval reports them (its ``acc`` is 0-1, ours 0-100); ``stderr`` is None
    where lm-eval has none (corpus metrics). ``headline`` marks the one row per top-level task (a task that is not
    the member of a reported group) that the per-stage comparison table shows.
    """
    sizes = _task_sizes(results)
    per_task = {**results.get("results", {}), **results.get("groups", {})}
    rows: list[dict[str, Any]] = []
    for task, metrics in per_task.items():
        for key, raw in metrics.items():
            # Metric keys are "<metric>,<filter>"; the others (alias, name, sample_len, sample_count) describe the run.
            metric, comma, filt = key.partition(",")
            value = _number(raw)
            if not comma or metric.endswith("_stderr") or value is None:
                continue
            name = metric if filt == "none" else key
            stderr = _number(metrics.get(f"{metric}_stderr,{filt}"))
            rows.append({"task": task, "metric": name, "value": value, "stderr": stderr, "n": sizes.get(task),
                         "headline": False})
    has_rows = {r["task"] for r in rows}
    members = {c for g, cs in results.get("group_subtasks", {}).items() if g in has_rows for c in cs}
    for task in has_rows - members:
        own = {r["metric"]: r for r in rows if r["task"] == task}
        family = (results.get("configs", {}).get(task, {}).get("metadata") or {}).get("family")
        prefs = ((HEADLINE[family],) if family in HEADLINE else ()) + HEADLINE_PREFERENCE
        pick = next((own[m] for m in prefs if m in own), next(iter(own.values())))
        pick["headline"] = True
    return rows


def summary(results: dict, requested: Sequence[str]) -> dict[str, Any]:
    """The summary file: requested task names, the model lm-eval saw, and :func:`summary_rows`."""
    return {"tasks": list(requested), "rows": summary_rows(results)}


def summary_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A table of every row (headline rows in bold task names)."""
    lines = ["| task | metric | value | stderr | n |", "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        task = f"**{r['task']}**" if r.get("headline") else r["task"]
        stderr = "-" if r["stderr"] is None else f"{r['stderr']:.4f}"
        n = "-" if r["n"] is None else r["n"]
        lines.append(f"| {task} | {r['metric']} | {r['value']:.4f} | {stderr} | {n} |")
    return "\n".join(lines) + ("\n\nlm-eval's acc/acc_norm are 0-1; our tasks' (langadapt_*) metrics are 0-100. Bold: "
                               "the row the per-stage comparison table shows.\n")


def read_summary(path: str, flag: str = "lm_eval") -> dict[str, Any]:
    """A summary written by ``inference/lm_eval.py`` (its folder, or the file itself), validated."""
    from langadapt.io import read_json

    file = os.path.join(path, SUMMARY_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise InputError(f"{path} holds no {SUMMARY_FILE}; pass the --output_dir of inference/lm_eval.py",
                         arg=flag, value=path)
    data = read_json(file)
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and {"task", "metric", "value"} <= set(r)
                                             for r in rows):
        raise InputError(f"{file}: expected {{\"rows\": [{{task, metric, value, stderr, n}}, ...]}}; rerun "
                         "inference/lm_eval.py", arg=flag, value=file)
    return data


def stage_scores(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The headline rows of a summary as comparison-table entries ``{"lm_eval/<task>": {task, n, headline, ...}}``.

    lm-eval's 0-1 metrics (``acc`` ...) are shown x100 so every column of the table is on one 0-100 scale.
    """
    out: dict[str, dict[str, Any]] = {}
    for r in summary["rows"]:
        if not r.get("headline"):
            continue
        scale = 100.0 if r["metric"].split(",")[0] in FRACTION_METRICS else 1.0
        stderr = r.get("stderr")
        out[f"lm_eval/{r['task']}"] = {
            "task": "lm_eval", "n": r.get("n"), "headline": r["metric"], r["metric"]: scale * r["value"],
            "stderr": None if stderr is None else scale * stderr,
        }
    return out

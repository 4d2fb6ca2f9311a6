"""lm-evaluation-harness integration (langadapt/lm_eval_tasks.py, inference/lm_eval.py) on a tiny model, offline:
the generated task folder, runs for a base model, an adapter chain and a merged model, scores equal to
inference/score.py's on the same predictions, log-likelihood choices equal to inference.py --scoring loglik, the
normalizer applied to requests, summary rows in the comparison table, and bad input."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from _inference_helpers import bundled, load_script, read_jsonl, write_json_list, write_jsonl
from _sft_helpers import make_adapter, make_extended_tokenizer, one_torch_thread  # noqa: F401 (autouse fixture)
from langadapt import lm_eval_tasks as lt
from langadapt.cli import UsageError
from langadapt.errors import InputError
from langadapt.evaldata import file_key, load_testset

lm_eval_script = load_script("inference/lm_eval.py")
score = load_script("inference/score.py")
inference = load_script("inference/inference.py")

OUTPUT_FILES = {"results.json", "lm_eval_summary.json", "lm_eval_summary.md", "run_args.json", "tasks"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    """Two folders, three classification files and two generation files (.json and .jsonl)."""
    d = tmp_path_factory.mktemp("lm_eval_data")
    write_json_list(d / "fa" / "sentiment.json", bundled("fa", "sentiment", 8))
    write_jsonl(d / "en" / "multiple_choice.jsonl", bundled("en", "multiple_choice", 6))
    write_json_list(d / "en" / "entailment.json", bundled("en", "entailment", 6))
    write_json_list(d / "fa" / "translation_en_fa.json", bundled("fa", "translation_en_fa", 3))
    write_jsonl(d / "en" / "summary.jsonl", bundled("en", "summary", 2))
    return str(d)


def run_lm_eval(out, base, data_dir, *extra):
    return lm_eval_script.main(["--base_model", base, "--data_dir", data_dir, "--output_dir", str(out),
                                "--batch_size", "4", "--max_new_tokens", "6", "--torch_dtype", "float32", *extra])


def samples_of(out) -> dict[str, list[dict]]:
    return {f[len("samples_"):-len(".jsonl")]: read_jsonl(os.path.join(out, f))
            for f in os.listdir(out) if f.startswith("samples_")}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, tiny_model_dir, data_dir) -> str:
    out = tmp_path_factory.mktemp("lm_eval_base") / "out"
    run_lm_eval(out, tiny_model_dir, data_dir)
    return str(out)


# ------------------------------------------------------------------------------------------ the task folder


def test_task_folder_has_one_offline_task_per_test_file(data_dir, tmp_path):
    specs = lt.write_task_folder(data_dir, str(tmp_path / "tasks"))
    names = sorted(s.name for s in specs)
    assert names == ["langadapt_en_entailment", "langadapt_en_multiple_choice", "langadapt_en_summary",
                     "langadapt_fa_sentiment", "langadapt_fa_translation_en_fa"]
    assert sorted(os.listdir(tmp_path / "tasks")) == sorted([f"{n}.{e}" for n in names for e in ("yaml", "jsonl")])
    assert {s.tags for s in specs} == {("langadapt", "langadapt_fa"), ("langadapt", "langadapt_en")}
    text = (tmp_path / "tasks" / "langadapt_fa_sentiment.yaml").read_text(encoding="utf-8")
    assert "process_results: !function langadapt.lm_eval_tasks.process_classification" in text
    config = yaml.load(text.replace("!function", ""), Loader=yaml.SafeLoader)
    assert config["dataset_path"] == "json" and config["output_type"] == "multiple_choice"
    assert config["dataset_kwargs"]["data_files"]["test"] == str(tmp_path / "tasks" / "langadapt_fa_sentiment.jsonl")
    records = read_jsonl(tmp_path / "tasks" / "langadapt_fa_sentiment.jsonl")
    src = bundled("fa", "sentiment", 8)
    assert [r["answer"] for r in records] == [s["output"] for s in src]
    assert sorted(records[0]["choices"]) == sorted({s["output"] for s in src})  # the file's label set, one spelling
    assert all(r["choices"][r["gold"]] == r["answer"] for r in records)
    assert records[0]["prompt"].endswith("### Response:\n") and src[0]["input"] in records[0]["prompt"]
    gen = yaml.load((tmp_path / "tasks" / "langadapt_fa_translation_en_fa.yaml").read_text(encoding="utf-8")
                    .replace("!function", ""), Loader=yaml.SafeLoader)
    assert gen["output_type"] == "generate_until"
    assert gen["generation_kwargs"]["until"] == ["### Instruction:", "### Input:", "### Response:"]
    assert gen["generation_kwargs"]["max_gen_toks"] == 256 and gen["generation_kwargs"]["repetition_penalty"] == 1.1
    assert [m["metric"] for m in gen["metric_list"]] == ["rouge1", "rouge2", "rougeL", "chrf", "bleu"]


def test_seed_layout_with_translate_test_folder(tmp_path):
    d = tmp_path / "testset"
    write_json_list(d / "translate-test" / "sentiment.json", bundled("en", "sentiment", 3))
    write_json_list(d / "fa" / "sentiment.json", bundled("fa", "sentiment", 3))
    specs = lt.write_task_folder(str(d), str(tmp_path / "tasks"))
    assert sorted(s.name for s in specs) == ["langadapt_fa_sentiment", "langadapt_translate_test_sentiment"]
    assert {s.tags for s in specs} == {("langadapt", "langadapt_fa"), ("langadapt", "langadapt_translate_test")}


def test_unknown_layout_names_the_file(tmp_path):
    d = tmp_path / "testset"
    write_json_list(d / "fa" / "sentiment.json", bundled("fa", "sentiment", 3))
    write_json_list(d / "fa" / "poems.json", bundled("fa", "summary", 2))
    with pytest.raises(InputError, match=r"fa/poems\.json: cannot tell the task from the file name"):
        lt.write_task_folder(str(d), str(tmp_path / "tasks"))
    assert not (tmp_path / "tasks").exists()  # nothing half-written
    os.remove(d / "fa" / "poems.json")
    write_json_list(d / "en" / "sentiment.json", [{"instruction": "Label it.", "input": "ok"}])
    with pytest.raises(InputError, match=r"en/sentiment\.json: records \[0\] have no gold"):
        lt.write_task_folder(str(d), str(tmp_path / "tasks"))
    # Through the script: exit-2 style error naming the flag and the file.
    with pytest.raises(UsageError, match=r"--data_dir: .*en/sentiment\.json"):
        lm_eval_script.main(["--data_dir", str(d), "--write_tasks", str(tmp_path / "t2")])


def test_write_tasks_only(data_dir, tmp_path):
    got = lm_eval_script.main(["--data_dir", data_dir, "--write_tasks", str(tmp_path / "tasks"), "--template", "none"])
    assert len(got["tasks"]) == 5
    rec = read_jsonl(tmp_path / "tasks" / "langadapt_fa_sentiment.jsonl")[0]
    src = bundled("fa", "sentiment", 1)[0]
    assert rec["prompt"] == f"{src['instruction']}\n\n{src['input']}"
    cfg = yaml.load((tmp_path / "tasks" / "langadapt_fa_sentiment.yaml").read_text(encoding="utf-8")
                    .replace("!function", ""), Loader=yaml.SafeLoader)
    assert cfg["dataset_kwargs"]["data_files"]["test"] == str(tmp_path / "tasks" / "langadapt_fa_sentiment.jsonl")
    with pytest.raises(UsageError, match="--write_tasks"):  # an existing folder is kept unless --overwrite
        lm_eval_script.main(["--data_dir", data_dir, "--write_tasks", str(tmp_path / "tasks")])
    lm_eval_script.main(["--data_dir", data_dir, "--write_tasks", str(tmp_path / "tasks"), "--overwrite"])
    assert len(os.listdir(tmp_path / "tasks")) == 10


# ------------------------------------------------------------------------------------------ runs


def test_base_run_writes_results_samples_and_summary(base_run):
    files = set(os.listdir(base_run))
    sample_files = {f"samples_{n}.jsonl" for n in ("langadapt_en_multiple_choice", "langadapt_en_summary",
                                                   "langadapt_en_entailment", "langadapt_fa_sentiment",
                                                   "langadapt_fa_translation_en_fa")}
    assert files == OUTPUT_FILES | sample_files
    results = json.load(open(os.path.join(base_run, "results.json")))
    assert set(results["results"]) == {n[len("samples_"):-len(".jsonl")] for n in sample_files}
    summary = json.load(open(os.path.join(base_run, lt.SUMMARY_FILE)))
    assert summary["tasks"] == ["langadapt"]
    rows = {(r["task"], r["metric"]): r for r in summary["rows"]}
    assert {m for t, m in rows if t == "langadapt_fa_sentiment"} == {"accuracy", "macro_f1"}
    assert {m for t, m in rows if t == "langadapt_en_summary"} == {"rouge1", "rouge2", "rougeL", "chrf", "bleu"}
    assert set(rows[("langadapt_fa_sentiment", "accuracy")]) == {"task", "metric", "value", "stderr", "n", "headline"}
    assert rows[("langadapt_fa_sentiment", "accuracy")]["n"] == 8
    assert rows[("langadapt_fa_sentiment", "accuracy")]["stderr"] is not None  # a mean: lm-eval's stderr
    assert rows[("langadapt_fa_translation_en_fa", "bleu")]["stderr"] is None  # a corpus metric: none
    headlines = {r["task"]: r["metric"] for r in summary["rows"] if r["headline"]}
    assert headlines == {"langadapt_en_multiple_choice": "accuracy", "langadapt_en_entailment": "accuracy",
                         "langadapt_fa_sentiment": "accuracy", "langadapt_en_summary": "rougeL",
                         "langadapt_fa_translation_en_fa": "bleu"}
    # The task folder kept with the results points at its own data files, so it reruns with lm-eval's CLI.
    cfg = yaml.load(open(os.path.join(base_run, "tasks", "langadapt_fa_sentiment.yaml"), encoding="utf-8")
                    .read().replace("!function", ""), Loader=yaml.SafeLoader)
    assert cfg["dataset_kwargs"]["data_files"]["test"] == os.path.join(base_run, "tasks",
                                                                        "langadapt_fa_sentiment.jsonl")


def _predictions_from_samples(run_dir: str, data_dir: str, pred_dir) -> None:
    """What inference.py would have written had it produced lm-eval's answers: one prediction file per test file."""
    tests = {}
    for root, _, files in os.walk(data_dir):
        for f in files:
            key = file_key(os.path.join(root, f), data_dir)
            tests[lt.task_name(key)] = (key, load_testset(os.path.join(root, f)))
    for task, samples in samples_of(run_dir).items():
        key, examples = tests[task]
        records = []
        for s in sorted(samples, key=lambda s: s["doc"]["id"]):
            doc = s["doc"]
            ex = examples[doc["id"]]
            if "choices" in doc:
                output = lt.classification_choice(doc, s["filtered_resps"])
            else:
                output = lt.generation_output(doc, s["filtered_resps"][0])
            records.append({"id": ex.id, "instruction": ex.instruction, "input": ex.input, "prediction": output,
                            "gold": ex.gold})
        write_jsonl(os.path.join(pred_dir, *key.split("/")) + ".jsonl", records)


def test_scores_equal_score_py_on_the_same_predictions(base_run, data_dir, tmp_path):
    pred = tmp_path / "pred"
    _predictions_from_samples(base_run, data_dir, pred)
    ours = score.main(["--predictions_dir", str(pred)])
    results = json.load(open(os.path.join(base_run, "results.json")))["results"]
    compared = 0
    for key, s in ours.items():
        task = results[lt.task_name(key)]
        metrics = lt.CLASSIFICATION_METRICS if "accuracy" in s else lt.GENERATION_METRICS
        for m in metrics:
            assert task[f"{m},none"] == pytest.approx(s[m], abs=1e-9), (key, m)
            compared += 1
    assert compared == 3 * 2 + 2 * 5
    # The generations were scored on real text: the tiny model produced something for every example.
    gen = samples_of(base_run)["langadapt_fa_translation_en_fa"]
    assert all(isinstance(x["filtered_resps"][0], str) for x in gen) and len(gen) == 3


def test_loglik_choice_equals_inference_scoring_loglik(base_run, data_dir, tiny_model_dir, tmp_path):
    pred = tmp_path / "pred"
    inference.main(["--base_model", tiny_model_dir, "--data_dir", data_dir, "--predictions_dir", str(pred),
                    "--scoring", "loglik", "--batch_size", "4", "--max_new_tokens", "2", "--torch_dtype", "float32"])
    samples = samples_of(base_run)
    checked = 0
    for key in ("fa/sentiment", "en/multiple_choice", "en/entailment"):
        ours = {r["id"]: r["prediction"] for r in read_jsonl(pred / (key + ".jsonl"))}
        theirs = {s["doc"]["id"]: lt.classification_choice(s["doc"], s["filtered_resps"])
                  for s in samples[lt.task_name(key)]}
        assert theirs == ours, key
        checked += len(ours)
    assert checked == 8 + 6 + 6
    # The margins depend on the prompt (a ranking that ignored it would make the equality prove little).
    margins = {round(max(r[0] for r in s["filtered_resps"]) - min(r[0] for r in s["filtered_resps"]), 4)
               for s in samples["langadapt_fa_sentiment"]}
    assert len(margins) == 8


def test_adapter_chain_and_merged_model_runs_agree(tmp_path, tiny_model_dir, data_dir, base_run):
    from langadapt.args.inference import MergeArguments
    from langadapt.merge import merge_adapters

    tok = make_extended_tokenizer(tiny_model_dir, str(tmp_path / "tok"))
    parent = make_adapter(tiny_model_dir, tok, str(tmp_path / "pt"), mode="lora", seed=1)
    child = make_adapter(tiny_model_dir, tok, str(tmp_path / "sft"), mode="new_rows", seed=2, peft_path=parent)
    merge_adapters(MergeArguments(model_name_or_path=tiny_model_dir, peft_path=f"{parent},{child}",
                                  output_dir=str(tmp_path / "merged")))
    small = tmp_path / "small"
    write_json_list(small / "fa" / "sentiment.json", bundled("fa", "sentiment", 8))
    write_json_list(small / "en" / "translation_fa_en.json", bundled("en", "translation_fa_en", 2))
    run_lm_eval(tmp_path / "chain", tiny_model_dir, str(small), "--lora_model", f"{parent},{child}")
    run_lm_eval(tmp_path / "merged_out", str(tmp_path / "merged"), str(small))
    chain, merged = samples_of(tmp_path / "chain"), samples_of(tmp_path / "merged_out")
    base = samples_of(base_run)
    assert set(chain) == set(merged) == {"langadapt_fa_sentiment", "langadapt_en_translation_fa_en"}
    for a, b, c in zip(chain["langadapt_fa_sentiment"], merged["langadapt_fa_sentiment"],
                       base["langadapt_fa_sentiment"]):
        lls_a, lls_b = [r[0] for r in a["filtered_resps"]], [r[0] for r in b["filtered_resps"]]
        assert lls_a == pytest.approx(lls_b, abs=1e-3)
        assert lls_a != pytest.approx([r[0] for r in c["filtered_resps"]], abs=1e-3)  # the adapters do something
    assert [s["filtered_resps"] for s in chain["langadapt_en_translation_fa_en"]] == \
        [s["filtered_resps"] for s in merged["langadapt_en_translation_fa_en"]]
    assert json.load(open(tmp_path / "chain" / "run_args.json"))["lm_eval"]["peft_path"] == f"{parent},{child}"


def test_requests_are_normalized_as_training_text_was(tiny_model_dir):
    """Arabic yeh/kaf and a bidi mark in a request score exactly like the normalized text (and not without it)."""
    from lm_eval.api.instance import Instance

    from langadapt.normalize import NormalizerConfig, normalize

    model, tok = lt.load_model(tiny_model_dir, [], None, "float32", "cpu")
    raw_ctx, cont = "\u200fكتاب خوبي است و", " دوست دارم"
    clean_ctx = normalize(raw_ctx)
    assert clean_ctx != raw_ctx

    def ll(lm, ctx):
        req = Instance("loglikelihood", {}, (ctx, cont), 0, ("t", 0, 1))
        return lm.loglikelihood([req], disable_tqdm=True)[0][0], req

    normalizing = lt.make_lm(model, tok, NormalizerConfig(), batch_size=1)
    plain = lt.make_lm(model, tok, None, batch_size=1)
    got, req = ll(normalizing, raw_ctx)
    assert req.args == (clean_ctx, cont)  # the logged request is what the model saw
    assert got == pytest.approx(ll(plain, clean_ctx)[0], abs=1e-6)
    assert got != pytest.approx(ll(plain, raw_ctx)[0], abs=1e-3)


# ------------------------------------------------------------------------------------------ comparison table


def test_summary_rows_land_in_the_comparison_table(base_run, data_dir, tmp_path):
    pred = tmp_path / "pred"
    _predictions_from_samples(base_run, data_dir, pred)
    out = tmp_path / "cmp"
    table = score.main(["--compare", f"base={pred}", "--output_dir", str(out), "--lm_eval", f"base={base_run}",
                        f"sft={base_run}"])
    cols = {c["key"]: c for c in table["columns"]}
    col = cols["lm_eval/langadapt_fa_sentiment"]
    assert col["metric"] == "accuracy" and col["task"] == "lm_eval"
    summary = json.load(open(os.path.join(base_run, lt.SUMMARY_FILE)))
    want = next(r["value"] for r in summary["rows"] if r["task"] == "langadapt_fa_sentiment" and r["headline"])
    assert table["rows"]["base"]["lm_eval/langadapt_fa_sentiment"] == want
    assert table["rows"]["sft"]["lm_eval/langadapt_fa_sentiment"] == want  # a stage with lm-eval results only
    assert table["rows"]["sft"]["fa/sentiment"] is None
    assert list(table["rows"]) == ["base", "sft"]
    md = (out / "comparison.md").read_text(encoding="utf-8")
    assert "langadapt_fa_sentiment" in md and "sentiment (fa) accuracy" in md


def test_run_report_reads_lm_eval_summaries(base_run, data_dir, tmp_path):
    """Without score.py's comparison.json the report builds the table itself, lm-eval columns included."""
    import shutil

    from langadapt.report import task_scores

    run = tmp_path / "run"
    _predictions_from_samples(base_run, data_dir, run / "predictions" / "base")
    score.main(["--predictions_dir", str(run / "predictions" / "base")])
    shutil.copytree(base_run, run / "lm_eval" / "sft")  # a stage evaluated with lm-eval only
    table = task_scores(str(run))
    assert list(table["rows"]) == ["base", "sft"]
    assert table["rows"]["base"]["fa/sentiment"] is not None
    assert table["rows"]["base"]["lm_eval/langadapt_fa_sentiment"] is None
    assert table["rows"]["sft"]["lm_eval/langadapt_en_summary"] is not None
    assert {c["metric"] for c in table["columns"] if c["key"] == "lm_eval/langadapt_en_summary"} == {"rougeL"}


def test_a_group_over_our_tasks_is_one_headline_row(tiny_model_dir, data_dir, tmp_path):
    """A user's group (--include_path) over generated tasks: lm-eval aggregates it, and only the group's row is a
    column of the table; its n is the sum of its members'."""
    groups = tmp_path / "groups"
    groups.mkdir()
    (groups / "cls.yaml").write_text("group: la_cls\ntask:\n  - langadapt_fa_sentiment\n  - langadapt_en_entailment\n"
                                     "aggregate_metric_list:\n  - metric: accuracy\n    weight_by_size: true\n"
                                     "metadata:\n  version: 1.0\n")
    out = tmp_path / "out"
    summary = run_lm_eval(out, tiny_model_dir, data_dir, "--tasks", "la_cls", "--include_path", str(groups))
    rows = {(r["task"], r["metric"]): r for r in summary["rows"]}
    assert [(r["task"], r["metric"]) for r in summary["rows"] if r["headline"]] == [("la_cls", "accuracy")]
    assert rows[("la_cls", "accuracy")]["n"] == 8 + 6
    want = (8 * rows[("langadapt_fa_sentiment", "accuracy")]["value"] +
            6 * rows[("langadapt_en_entailment", "accuracy")]["value"]) / 14
    assert rows[("la_cls", "accuracy")]["value"] == pytest.approx(want)
    assert set(lt.stage_scores(summary)) == {"lm_eval/la_cls"}


def test_lm_eval_fraction_metrics_are_shown_on_the_0_100_scale():
    summary = {"rows": [
        {"task": "belebele_pes_Arab", "metric": "acc", "value": 0.25, "stderr": 0.01, "n": 900, "headline": True},
        {"task": "belebele_pes_Arab", "metric": "acc_norm", "value": 0.3, "stderr": 0.01, "n": 900, "headline": False},
    ]}
    got = lt.stage_scores(summary)
    assert got == {"lm_eval/belebele_pes_Arab": {"task": "lm_eval", "n": 900, "headline": "acc", "acc": 25.0,
                                                 "stderr": 1.0}}


def test_summary_rows_of_a_group_mark_only_the_group():
    results = {
        "results": {"grp": {"alias": "grp", "name": "grp", "sample_len": 40, "acc,none": 0.5, "acc_stderr,none": 0.1,
                            "sample_count": {"acc,none": 40}},
                    "sub_a": {"alias": " - a", "acc,none": 0.4, "acc_stderr,none": 0.1, "acc_norm,none": 0.45,
                              "acc_norm_stderr,none": 0.1},
                    "sub_b": {"alias": " - b", "acc,none": 0.6, "acc_stderr,none": "N/A"}},
        "group_subtasks": {"grp": ["sub_a", "sub_b"]},
        "n-samples": {"sub_a": {"original": 10, "effective": 10}, "sub_b": {"original": 30, "effective": 30}},
    }
    rows = lt.summary_rows(results)
    assert {(r["task"], r["metric"]) for r in rows if r["headline"]} == {("grp", "acc")}
    by = {(r["task"], r["metric"]): r for r in rows}
    assert by[("grp", "acc")]["n"] == 40 and by[("sub_b", "acc")]["stderr"] is None
    assert by[("sub_a", "acc_norm")]["value"] == 0.45
    assert {m for t, m in by} == {"acc", "acc_norm"}  # sample_len and the like are not metrics


# ------------------------------------------------------------------------------------------ bad input


def test_unknown_task_name_lists_close_matches():
    known = ["belebele_pes_Arab", "belebele_arb_Arab", "global_mmlu_full_fa", "langadapt_fa_sentiment"]
    with pytest.raises(InputError, match=r"unknown lm-eval task 'belebele_pes_arab'; close matches: "
                                         r"belebele_pes_Arab"):
        lt.check_task_names(["belebele_pes_arab"], known)
    with pytest.raises(InputError, match="lm-eval ls tasks"):
        lt.check_task_names(["zzz"], known)
    lt.check_task_names(["global_mmlu_full_fa", "langadapt_fa_sentiment"], known)


def test_hub_only_task_offline_is_one_line():
    class Manager:
        def load_task_or_group(self, names):
            raise ConnectionError("Couldn't reach 'facebook/belebele' on the Hub (OfflineModeIsEnabled)")

    with pytest.raises(InputError) as e:
        lt.load_tasks(["belebele_pes_Arab"], Manager())
    msg = e.value.render()
    assert "\n" not in msg
    assert msg.startswith("--tasks: task belebele_pes_Arab (dataset facebook/belebele) needs its data from the "
                          "Hugging Face hub")
    assert "local" in msg or "cache" in msg


@pytest.mark.slow
def test_real_hub_task_offline_and_misspelt_name(tiny_model_dir, tmp_path, monkeypatch):
    """lm-eval's own index (~15k tasks, tens of seconds to build): a misspelt Belebele name lists the right one,
    and the real Belebele task offline stops with the one-line hub message before the model loads."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "data"
    write_json_list(data / "fa" / "sentiment.json", bundled("fa", "sentiment", 3))
    with pytest.raises(UsageError, match=r"--tasks: unknown lm-eval task 'langadapt_fa_sentimnt'; close matches: "
                                         r"langadapt_fa_sentiment"):
        run_lm_eval(tmp_path / "o", tiny_model_dir, str(data), "--tasks", "langadapt_fa_sentimnt")
    with pytest.raises(UsageError, match=r"close matches: belebele_pes_Arab"):
        lm_eval_script.main(["--base_model", tiny_model_dir, "--tasks", "belebele_pes_Arb",
                             "--output_dir", str(tmp_path / "o")])
    with pytest.raises(UsageError, match=r"^--tasks: task belebele_pes_Arab \(dataset facebook/belebele\) needs "):
        lm_eval_script.main(["--base_model", tiny_model_dir, "--tasks", "belebele_pes_Arab",
                             "--output_dir", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()

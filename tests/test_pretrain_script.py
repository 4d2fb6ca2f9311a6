"""pretrain/run_clm_pt_with_peft.py end to end on a tiny model: files written, modes, resume, continuation,
bad input."""

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from _pretrain_helpers import base_argv, extend_tokenizer, write_corpus
from _resume_helpers import carries_mark, logged_steps, mark_checkpoint, step_recording_callback
from _scripts import load_script
from langadapt.args import DEFAULT_EMBEDDING_INIT
from langadapt.cli import UsageError
from langadapt.errors import InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pretrain = load_script("pretrain/run_clm_pt_with_peft.py")


@pytest.fixture(scope="module")
def ext_dir(tmp_path_factory, bpe_base_dir, persian_lines):
    return extend_tokenizer(bpe_base_dir, persian_lines[:3000], str(tmp_path_factory.mktemp("ext")), n_new=100)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, persian_lines):
    return write_corpus(str(tmp_path_factory.mktemp("corpus")), persian_lines, n=600)


def read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_smoke_lora_writes_exactly_the_contract_files(tiny_model_dir, ext_dir, corpus, tmp_path):
    out = str(tmp_path / "out")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("كتاب\nHello\n", encoding="utf-8")  # Arabic kaf: normalized like the training text
    metrics = pretrain.main(base_argv(tiny_model_dir, ext_dir, corpus, out, "--training_mode", "lora",
                                      "--eval_strategy", "steps", "--eval_steps", "2", "--report_to", "tensorboard",
                                      "--sample_max_new_tokens", "3", "--sample_prompts_file", str(prompts)))
    assert sorted(os.listdir(out)) == sorted([
        "README.md", "adapter_config.json", "adapter_model.safetensors", "all_results.json", "chat_template.jinja",
        "langadapt_lineage.json", "langadapt_model.json", "langadapt_normalizer.json", "langadapt_tokenizer.json",
        "run_args.json", "runs",
        "samples.jsonl", "tokenizer.json", "tokenizer_config.json", "trainer_state.json", "training_args.bin",
    ])
    # The tokenizer folder's own records travel with the adapter (save_pretrained writes only HF files).
    for name in ("langadapt_normalizer.json", "langadapt_tokenizer.json"):
        assert read(os.path.join(out, name)) == read(os.path.join(ext_dir, name)), name
    results = read(os.path.join(out, "all_results.json"))
    assert results["eval_perplexity"] == pytest.approx(torch.tensor(results["eval_loss"]).exp().item(), rel=1e-5)
    assert {"train_loss", "train_runtime", "eval_loss"} <= set(results) and metrics["eval_loss"] == results["eval_loss"]
    info = read(os.path.join(out, "langadapt_model.json"))
    tok_info = read(os.path.join(ext_dir, "langadapt_tokenizer.json"))
    assert info == {"base_model_name_or_path": tiny_model_dir, "base_embedding_rows": 1000,
                    "tokenizer_size": tok_info["vocab_size"], "embedding_rows": 1152, "training_mode": "lora",
                    "embedding_init": DEFAULT_EMBEDDING_INIT, "is_adapter": True, "parent_adapters": [],
                    "merged_adapters": []}
    run_args = read(os.path.join(out, "run_args.json"))
    assert run_args["adaptation"]["training_mode"] == "lora" and run_args["run"]["git_commit"] is not None
    assert run_args["resolved"]["embeddings"]["init"] == DEFAULT_EMBEDDING_INIT
    assert run_args["resolved"]["embeddings"]["transformers_mean_resizing"] is False
    assert run_args["resolved"]["embeddings"]["num_new_tokens"] == tok_info["vocab_size"] - 1000
    assert run_args["resolved"]["tokens_per_step"] == 2 * 32
    assert "slurm_job_id" in run_args["run"]
    samples = [json.loads(line) for line in open(os.path.join(out, "samples.jsonl"), encoding="utf-8")]
    assert [s["prompt"] for s in samples] == ["کتاب", "Hello"] and samples[0]["step"] == 2
    assert os.listdir(os.path.join(out, "runs"))  # TensorBoard events
    saved = load_file(os.path.join(out, "adapter_model.safetensors"))
    assert any("lora_A" in k for k in saved)
    # modules_to_save: the trained tables, whole (peft stores them under the plain module names).
    assert saved["base_model.model.model.embed_tokens.weight"].shape[0] == 1152
    assert saved["base_model.model.lm_head.weight"].shape[0] == 1152
    # ... and nothing else of them: no second copy of the resized base tables (langadapt/loading.py's docstring).
    assert sorted(k for k in saved if "embed_tokens" in k or "lm_head" in k) == [
        "base_model.model.lm_head.weight", "base_model.model.model.embed_tokens.weight"]


@pytest.mark.parametrize("mode,files", [
    ("full", {"model.safetensors", "config.json", "generation_config.json"}),
    ("embeddings", {"model.safetensors", "config.json", "generation_config.json"}),
    ("new_rows", {"adapter_model.safetensors", "adapter_config.json"}),
])
def test_every_mode_trains_and_saves(mode, files, tiny_tied_model_dir, ext_dir, corpus, tmp_path):
    out = str(tmp_path / mode)
    pretrain.main(base_argv(tiny_tied_model_dir, ext_dir, corpus, out, "--training_mode", mode))
    assert files <= set(os.listdir(out))
    info = read(os.path.join(out, "langadapt_model.json"))
    assert info["training_mode"] == mode and info["is_adapter"] == (mode == "new_rows")
    if mode == "full":
        from transformers import AutoModelForCausalLM

        m = AutoModelForCausalLM.from_pretrained(out)
        assert m.get_input_embeddings().weight.shape[0] == 1152 and m.lm_head.weight is m.model.embed_tokens.weight


def test_seed_flags_still_work(tiny_model_dir, ext_dir, corpus, tmp_path):
    out = str(tmp_path / "seed")
    pretrain.main(base_argv(tiny_model_dir, ext_dir, corpus, out, "--llama", "--use_lora", "--lora_rank", "4",
                            "--lora_alpha", "8", "--lora_dropout", "0.0", "--trainable", "q_proj,v_proj",
                            "--modules_to_save", "embed_tokens,lm_head", "--torch_dtype", "float32",
                            "--gradient_checkpointing"))
    cfg = read(os.path.join(out, "adapter_config.json"))
    assert cfg["r"] == 4 and set(cfg["target_modules"]) == {"q_proj", "v_proj"}
    assert set(cfg["modules_to_save"]) == {"embed_tokens", "lm_head"}


def test_json_config_is_the_whole_config(tiny_model_dir, ext_dir, corpus, tmp_path):
    out = str(tmp_path / "json")
    argv = base_argv(tiny_model_dir, ext_dir, corpus, out, "--training_mode", "embeddings")
    config = {}
    for i in range(0, len(argv)):
        if argv[i].startswith("--"):
            value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else True
            for cast in (int, float):  # a JSON config holds typed values, as a user would write them
                try:
                    value = cast(value)
                    break
                except (TypeError, ValueError):
                    pass
            config[argv[i][2:]] = value
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(config))
    pretrain.main([str(path)])
    assert read(os.path.join(out, "langadapt_model.json"))["training_mode"] == "embeddings"
    # The same run from flags resolves every argument of every group to the same value.
    flags_out = str(tmp_path / "flags")
    pretrain.main(base_argv(tiny_model_dir, ext_dir, corpus, flags_out, "--training_mode", "embeddings"))
    from_json = json.loads(open(os.path.join(out, "run_args.json"), encoding="utf-8").read().replace(out, flags_out))
    from_flags = read(os.path.join(flags_out, "run_args.json"))
    for group in ("model", "adaptation", "data", "samples", "training"):
        assert from_json[group] == from_flags[group], group


def _final_state(out):
    state = read(os.path.join(out, "trainer_state.json"))
    losses = {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}
    weights = load_file(os.path.join(out, "adapter_model.safetensors"))
    return losses, weights


def test_resume_matches_an_unbroken_run(tiny_model_dir, ext_dir, corpus, tmp_path, monkeypatch):
    """4 steps straight vs 2 steps, stop (only checkpoint-2 survives), resume, 2 more: the rerun computes steps 3 and
    4 only, from checkpoint-2's trainer state, and ends with the unbroken run's losses, learning rates and weights."""
    from langadapt import training

    def argv(out):
        return base_argv(tiny_model_dir, ext_dir, corpus, out, "--training_mode", "lora", "--max_steps", "4",
                         "--save_strategy", "steps", "--save_steps", "2", "--lora_dropout", "0.1",
                         "--validation_split_percentage", "0")

    straight, broken = str(tmp_path / "straight"), str(tmp_path / "broken")
    pretrain.main(argv(straight))
    pretrain.main(argv(broken))
    # Preempted right after checkpoint-2 was written: nothing later exists.
    for name in os.listdir(broken):
        if name not in ("checkpoint-2", "run_args.json"):
            p = os.path.join(broken, name)
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    mark_checkpoint(os.path.join(broken, "checkpoint-2"))
    steps_run = []
    with monkeypatch.context() as m:
        m.setattr(training, "PreemptionCallback", step_recording_callback(training.PreemptionCallback, steps_run))
        pretrain.main(argv(broken))  # no flag needed: resumes from checkpoint-2
    assert steps_run == [3, 4]  # a restart from step 0 would recompute 1 and 2
    assert carries_mark(broken)  # the trainer state came from checkpoint-2
    assert read(os.path.join(broken, "run_args.json"))["resolved"]["resumed_from"].endswith("checkpoint-2")
    (loss_a, w_a), (loss_b, w_b) = _final_state(straight), _final_state(broken)
    assert set(loss_a) == set(loss_b) == {1, 2, 3, 4}
    # Steps 3-4 continue the data order, the optimizer moments and the (linear) learning-rate schedule.
    for step in (3, 4):
        assert abs(loss_a[step] - loss_b[step]) < 1e-6, step
        assert logged_steps(broken)[step]["learning_rate"] == logged_steps(straight)[step]["learning_rate"] > 0
    assert w_a.keys() == w_b.keys()
    for k in w_a:
        torch.testing.assert_close(w_a[k], w_b[k], rtol=0, atol=1e-6)


def test_preemption_signal_saves_at_the_next_step_and_exits_75(tiny_model_dir, ext_dir, corpus, tmp_path,
                                                                 monkeypatch):
    """SIGUSR1 during step 3 of 5 (checkpoints every 100 steps): checkpoint-3 is saved, the script exits 75 without
    final outputs, and the rerun resumes from step 3 and ends where an unbroken run ends."""
    import signal

    from langadapt import training

    class SignalAtStep3(training.PreemptionCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                os.kill(os.getpid(), signal.SIGUSR1)  # what slurm/common.sh forwards on Slurm's warning
            return super().on_step_end(args, state, control, **kwargs)

    def argv(out):
        return base_argv(tiny_model_dir, ext_dir, corpus, out, "--training_mode", "lora", "--max_steps", "5",
                         "--save_strategy", "steps", "--save_steps", "100", "--validation_split_percentage", "0")

    straight, broken = str(tmp_path / "straight"), str(tmp_path / "broken")
    pretrain.main(argv(straight))
    with monkeypatch.context() as m:
        m.setattr(training, "PreemptionCallback", SignalAtStep3)
        with pytest.raises(SystemExit) as exit_info:
            pretrain.main(argv(broken))
    assert exit_info.value.code == training.PREEMPTED_EXIT_CODE == 75
    assert sorted(n for n in os.listdir(broken) if n.startswith("checkpoint-")) == ["checkpoint-3"]
    assert not os.path.exists(os.path.join(broken, "adapter_model.safetensors"))  # final outputs: the resumed run's
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # handlers restored after train()
    mark_checkpoint(os.path.join(broken, "checkpoint-3"))
    steps_run = []
    with monkeypatch.context() as m:
        m.setattr(training, "PreemptionCallback", step_recording_callback(training.PreemptionCallback, steps_run))
        pretrain.main(argv(broken))
    assert steps_run == [4, 5] and carries_mark(broken)  # resumed from checkpoint-3, not restarted from step 0
    assert read(os.path.join(broken, "run_args.json"))["resolved"]["resumed_from"].endswith("checkpoint-3")
    (loss_a, w_a), (loss_b, w_b) = _final_state(straight), _final_state(broken)
    assert abs(loss_a[5] - loss_b[5]) < 1e-6
    for k in w_a:
        torch.testing.assert_close(w_a[k], w_b[k], rtol=0, atol=1e-6)


def test_incomplete_last_checkpoint_is_skipped(tmp_path):
    from langadapt.lifecycle import last_good_checkpoint
    from langadapt.training import complete_checkpoints

    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-4").mkdir()  # killed while saving
    assert last_good_checkpoint(str(tmp_path)).endswith("checkpoint-2")
    assert complete_checkpoints(str(tmp_path)) == [str(tmp_path / "checkpoint-2")]


def test_peft_path_continues_or_stacks(tiny_model_dir, ext_dir, corpus, tmp_path, bpe_base_dir):
    first = str(tmp_path / "first")
    pretrain.main(base_argv(tiny_model_dir, ext_dir, corpus, first, "--training_mode", "lora"))
    # Same adapter type: trained further, so the new adapter replaces it (no parent).
    cont = str(tmp_path / "cont")
    pretrain.main(base_argv(tiny_model_dir, ext_dir, corpus, cont, "--training_mode", "lora", "--peft_path", first))
    assert read(os.path.join(cont, "langadapt_model.json"))["parent_adapters"] == []
    a, b = load_file(os.path.join(first, "adapter_model.safetensors")), \
        load_file(os.path.join(cont, "adapter_model.safetensors"))
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    # --peft_path without --tokenizer_name_or_path: the adapter's own (merged) tokenizer, not the base model's.
    own = str(tmp_path / "own_tokenizer")
    argv = base_argv(tiny_model_dir, ext_dir, corpus, own, "--training_mode", "lora", "--peft_path", first)
    i = argv.index("--tokenizer_name_or_path")
    del argv[i:i + 2]
    pretrain.main(argv)
    assert read(os.path.join(own, "run_args.json"))["model"]["tokenizer_name_or_path"] == first
    assert read(os.path.join(own, "langadapt_model.json"))["tokenizer_size"] == \
        read(os.path.join(first, "langadapt_model.json"))["tokenizer_size"]
    # Another type: the LoRA adapter is merged into the base and recorded as the parent of the new one.
    stacked = str(tmp_path / "stacked")
    pretrain.main(base_argv(tiny_model_dir, ext_dir, corpus, stacked, "--training_mode", "new_rows",
                            "--peft_path", first))
    assert read(os.path.join(stacked, "langadapt_model.json"))["parent_adapters"] == [os.path.abspath(first)]
    # An adapter made for another vocabulary size is refused before anything is written.
    bad = str(tmp_path / "bad")
    with pytest.raises(UsageError, match="--peft_path: .*1152 embedding rows"):
        pretrain.main(base_argv(tiny_model_dir, bpe_base_dir, corpus, bad, "--training_mode", "lora",
                                "--peft_path", first))
    assert not os.path.exists(bad)


@pytest.mark.parametrize("case", [
    "missing_model", "missing_tokenizer", "missing_dataset", "empty_dataset", "no_text_files", "block_size",
    "smaller_tokenizer", "deepspeed_missing", "deepspeed_invalid", "deepspeed_no_launcher", "nonempty_output",
    "bad_mode", "conflicting_flags", "streaming_without_max_steps",
])
def test_bad_input_fails_cleanly_naming_the_flag(case, tiny_model_dir, ext_dir, corpus, tmp_path, bpe_base_dir):
    out = str(tmp_path / "out")
    model, tok, data, extra = tiny_model_dir, ext_dir, corpus, []
    expect = {
        "missing_model": "--model_name_or_path", "missing_tokenizer": "--tokenizer_name_or_path",
        "missing_dataset": "--dataset_dir", "empty_dataset": "--dataset_dir", "no_text_files": "--dataset_dir",
        "block_size": "--block_size 4096 is above", "smaller_tokenizer": "--tokenizer_name_or_path",
        "deepspeed_missing": "--deepspeed", "deepspeed_invalid": "--deepspeed", "deepspeed_no_launcher": "launcher",
        "nonempty_output": "--overwrite_output_dir", "bad_mode": "--training_mode",
        "conflicting_flags": "--use_lora", "streaming_without_max_steps": "--max_steps",
    }[case]
    if case == "missing_model":
        model = str(tmp_path / "nope")
    elif case == "missing_tokenizer":
        tok = str(tmp_path / "nope")
    elif case == "missing_dataset":
        data = str(tmp_path / "nope")
    elif case == "empty_dataset":
        data = str(tmp_path / "empty")
        os.makedirs(data)
    elif case == "no_text_files":
        data = str(tmp_path / "csv")
        os.makedirs(data)
        open(os.path.join(data, "a.csv"), "w").write("x\n")
    elif case == "block_size":
        extra = ["--block_size", "4096"]
    elif case == "smaller_tokenizer":  # an extended model given the base tokenizer back
        pretrain.main(base_argv(tiny_model_dir, ext_dir, corpus, str(tmp_path / "ext_model"),
                                "--training_mode", "full"))
        model, tok = str(tmp_path / "ext_model"), bpe_base_dir
    elif case == "deepspeed_missing":
        extra = ["--deepspeed", str(tmp_path / "ds.json")]
    elif case == "deepspeed_invalid":
        (tmp_path / "ds.json").write_text("{not json")
        extra = ["--deepspeed", str(tmp_path / "ds.json")]
    elif case == "deepspeed_no_launcher":
        extra = ["--deepspeed", os.path.join(REPO, "configs", "deepspeed", "zero2.json")]
    elif case == "nonempty_output":
        os.makedirs(out)
        open(os.path.join(out, "keep.txt"), "w").write("results\n")
    elif case == "bad_mode":
        extra = ["--training_mode", "half"]
    elif case == "conflicting_flags":
        extra = ["--use_lora", "--training_mode", "full"]
    elif case == "streaming_without_max_steps":
        extra = ["--streaming", "--max_steps", "-1", "--num_train_epochs", "1"]
    before = sorted(os.listdir(out)) if os.path.isdir(out) else None
    argv = base_argv(model, tok, data, out, *extra)
    if case == "bad_mode":  # argparse rejects it with exit status 2 and names the flag on stderr
        with pytest.raises(SystemExit) as e:
            pretrain.main(argv)
        assert e.value.code == 2
    else:
        with pytest.raises((UsageError, InputError), match=expect):
            pretrain.main(argv)
    assert (sorted(os.listdir(out)) if os.path.isdir(out) else None) == before  # nothing half-written


def test_cli_exit_code_and_message(tmp_path, tiny_model_dir, corpus, capsys):
    """What `python pretrain/run_clm_pt_with_peft.py ...` does on bad input: `error: ...` on stderr, exit 2."""
    from langadapt.cli import run_main

    with pytest.raises(SystemExit) as e:
        run_main(pretrain.main, base_argv(tiny_model_dir, str(tmp_path / "nope"), corpus, str(tmp_path / "o")))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "error: --tokenizer_name_or_path" in err and "Traceback" not in err


@pytest.mark.parametrize("streaming", [False, True])
def test_weighted_mix_is_logged_and_recorded(streaming, tiny_model_dir, ext_dir, corpus, english_lines, tmp_path):
    en = write_corpus(str(tmp_path / "en"), english_lines, n=600)
    out = str(tmp_path / "mix")
    extra = ["--streaming", "--max_eval_blocks", "4"] if streaming else ["--data_cache_dir", str(tmp_path / "cache")]
    pretrain.main(base_argv(tiny_model_dir, ext_dir, f"{corpus}:0.8,{en}:0.2", out, *extra))
    run_args = read(os.path.join(out, "run_args.json"))
    assert run_args["data"]["dataset_dir"] == f"{corpus}:0.8,{en}:0.2"
    sources = run_args["resolved"]["data"]["sources"]
    assert [s["weight"] for s in sources] == pytest.approx([0.8, 0.2])
    assert run_args["resolved"]["data"]["streaming"] is streaming
    if not streaming:
        assert abs(sources[0]["drawn_share"] - 0.8) < 0.1 and sources[0]["cache_hit"] is False
    assert read(os.path.join(out, "all_results.json"))["train_loss"] > 0


def test_embedding_learning_rate_keeps_the_rows_while_lora_trains(tiny_model_dir, ext_dir, corpus, tmp_path):
    """--embedding_learning_rate reaches the optimizer: at a near-zero rate the saved embedding/head rows equal their
    initial values while the LoRA matrices (at --learning_rate) moved."""
    from langadapt.args import AdaptationArguments, ModelArguments
    from langadapt.modeling import prepare_model

    out = str(tmp_path / "out")
    pretrain.main(base_argv(tiny_model_dir, ext_dir, corpus, out, "--training_mode", "lora",
                            "--embedding_learning_rate", "1e-12"))
    assert read(os.path.join(out, "run_args.json"))["adaptation"]["embedding_learning_rate"] == 1e-12
    init = prepare_model(ModelArguments(model_name_or_path=tiny_model_dir, tokenizer_name_or_path=ext_dir),
                         AdaptationArguments(training_mode="full")).model
    saved = load_file(os.path.join(out, "adapter_model.safetensors"))
    emb = [k for k in saved if "embed_tokens" in k]
    assert emb, sorted(saved)[:5]
    torch.testing.assert_close(saved[emb[0]], init.get_input_embeddings().weight.detach(), atol=1e-6, rtol=0)
    lora_b = [v for k, v in saved.items() if "lora_B" in k]
    assert lora_b and max(v.abs().max().item() for v in lora_b) > 1e-4


def test_bpb_curve_at_step_zero_every_k_steps_and_the_end(tiny_model_dir, ext_dir, corpus, tmp_path, persian_lines):
    from langadapt.bpb import read_curve

    heldout = tmp_path / "fa.txt"
    heldout.write_text("\n".join(persian_lines[-30:]) + "\n", encoding="utf-8")
    out = str(tmp_path / "out")
    pretrain.main(base_argv(tiny_model_dir, ext_dir, corpus, out, "--training_mode", "lora", "--max_steps", "3",
                            "--bpb_eval_files", str(heldout), "--bpb_eval_steps", "2", "--bpb_eval_max_words", "50"))
    curve = read_curve(os.path.join(out, "bpb_curve.jsonl"))
    assert [(r["step"], r["file"]) for r in curve] == [(0, "fa"), (2, "fa"), (3, "fa")]
    assert [r["tokens_seen"] for r in curve] == [0, 2 * 2 * 32, 3 * 2 * 32]
    assert all(r["bpb"] > 0 and r["bytes"] == curve[0]["bytes"] for r in curve)
    assert curve[0]["wall_s"] <= curve[1]["wall_s"] <= curve[2]["wall_s"]
    with pytest.raises(InputError, match="does not exist") as e:
        pretrain.main(base_argv(tiny_model_dir, ext_dir, corpus, str(tmp_path / "o2"), "--bpb_eval_files",
                                str(tmp_path / "missing.txt")))
    assert e.value.arg == "bpb_eval_files"
    assert not os.path.exists(tmp_path / "o2")  # refused before anything was written: the same command reruns

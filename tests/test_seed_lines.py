"""The seed paper's three launch lines (/work/shared/seed-launch-lines.md: run_pt.sh, run_sft.sh, inference.sh) run
unchanged against our scripts on a tiny model, and a run's run_args.json fed back as a config reproduces its arguments.

Only what a CPU cannot do is changed: ``--fp16`` and ``--deepspeed`` need a GPU and a launcher, so they are parsed
(``--fp16``) or left out (``--deepspeed``: its file check is tested in test_pretrain_args.py), and ``--max_steps 2``
keeps the runs seconds long. Every other flag is the seed's, with the seed's meaning: ``run_sft.sh`` has no
``--use_lora`` (its SFT script only trained LoRA) and still trains LoRA, continuing ``--peft_path``.
"""

from __future__ import annotations

import json
import os

import pytest

from _sft_helpers import (  # noqa: F401 (one_torch_thread is an autouse fixture)
    instruction_records, load_script, make_extended_tokenizer, one_torch_thread, write_dataset,
)
from _inference_helpers import bundled, write_json_list
from langadapt.cli import parse_args

pretrain = load_script("pretrain/run_clm_pt_with_peft.py")
sft = load_script("sft/run_clm_sft_with_peft.py")
inference = load_script("inference/inference.py")

TRAINABLE = "q_proj,v_proj,k_proj,o_proj,gate_proj,down_proj,up_proj"
MODULES_TO_SAVE = "embed_tokens,lm_head"
CPU_ONLY = {"--fp16": 0, "--deepspeed": 1}  # flag -> how many values follow it
TEST_SIZE = ["--max_steps", "2"]


def seed_pt_line(v: dict[str, str]) -> list[str]:
    """run_pt.sh's flags, verbatim, with the user's ${...} values filled in."""
    return f"""
    --llama --deepspeed {v['deepspeed']} --model_name_or_path {v['model']} --tokenizer_name_or_path {v['tokenizer']}
    --dataset_dir {v['dataset_dir']} --data_cache_dir {v['data_cache']} --cache_dir {v['cache_dir']}
    --validation_split_percentage 0.001 --per_device_train_batch_size 2 --per_device_eval_batch_size 2
    --do_train --do_eval --seed 12345 --fp16 --num_train_epochs 1 --lr_scheduler_type cosine --learning_rate 1e-3
    --warmup_ratio 0.05 --weight_decay 0.01 --logging_strategy steps --logging_steps 10 --evaluation_strategy steps
    --eval_steps 2000 --save_strategy steps --save_total_limit 3 --save_steps 200 --gradient_accumulation_steps 1
    --preprocessing_num_workers 8 --block_size 512 --output_dir {v['output_dir']} --ddp_timeout 30000
    --logging_first_step True --lora_rank 4 --lora_alpha 8 --trainable {TRAINABLE} --modules_to_save {MODULES_TO_SAVE}
    --lora_dropout 0.05 --torch_dtype float16 --gradient_checkpointing --ddp_find_unused_parameters False
    --overwrite_output_dir False --freeze_transformer False --use_lora
    """.split()


def seed_sft_line(v: dict[str, str]) -> list[str]:
    """run_sft.sh's flags, verbatim (no --use_lora), with the user's ${...} values filled in."""
    return f"""
    --llama --deepspeed {v['deepspeed']} --model_name_or_path {v['model']} --tokenizer_name_or_path {v['tokenizer']}
    --dataset_dir {v['dataset_dir']} --data_cache_dir {v['data_cache']} --cache_dir {v['cache_dir']}
    --validation_split_percentage 0.001 --per_device_train_batch_size 2 --per_device_eval_batch_size 2
    --do_train --do_eval --seed 12345 --fp16 --num_train_epochs 1 --lr_scheduler_type cosine --learning_rate 1e-3
    --warmup_ratio 0.03 --weight_decay 0 --logging_strategy steps --logging_steps 10 --save_strategy steps
    --evaluation_strategy steps --save_total_limit 3 --eval_steps 200 --save_steps 200 --gradient_accumulation_steps 1
    --preprocessing_num_workers 8 --max_seq_length 1024 --output_dir {v['output_dir']} --overwrite_output_dir False
    --ddp_timeout 30000 --logging_first_step True --lora_rank 4 --lora_alpha 8 --trainable {TRAINABLE}
    --modules_to_save {MODULES_TO_SAVE} --lora_dropout 0.05 --torch_dtype float16 --gradient_checkpointing
    --validation_file {v['validation_file']} --ddp_find_unused_parameters False --peft_path {v['peft_model']}
    """.split()


def on_cpu(argv: list[str]) -> list[str]:
    """The seed line without the two flags that need a GPU and a distributed launcher."""
    out, skip = [], 0
    for token in argv:
        if skip:
            skip -= 1
        elif token in CPU_ONLY:
            skip = CPU_ONLY[token]
        else:
            out.append(token)
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, bpe_base_dir, persian_lines, tiny_model_dir):
    root = tmp_path_factory.mktemp("seed")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "fa.txt").write_text("\n".join(persian_lines[:300]) + "\n", encoding="utf-8")
    sft_dir = write_dataset(str(root / "sft_data"), instruction_records(persian_lines, 12))
    dev = write_dataset(str(root / "dev_data"), instruction_records(persian_lines[200:], 4), split_jsonl=False)
    return {"model": tiny_model_dir, "tokenizer": make_extended_tokenizer(bpe_base_dir, str(root / "tok")),
            "corpus": str(corpus), "sft": sft_dir, "dev": os.path.join(dev, "part1.json"),
            "cache_dir": str(root / "hf_cache"), "data_cache": str(root / "data_cache"),
            "deepspeed": os.path.join(os.path.dirname(__file__), "..", "configs", "deepspeed", "zero2.json"),
            "root": str(root)}


@pytest.fixture(scope="module")
def pt_out(inputs):
    """run_pt.sh's line, run: LoRA r=4 on every projection + embeddings/head in full, a fp16-loaded model."""
    v = {**inputs, "dataset_dir": inputs["corpus"], "output_dir": os.path.join(inputs["root"], "pt")}
    pretrain.main(on_cpu(seed_pt_line(v)) + TEST_SIZE)
    return v["output_dir"]


def test_seed_pretrain_line_means_what_it_meant(inputs, pt_out):
    args = json.load(open(os.path.join(pt_out, "run_args.json")))
    adapt, train = args["adaptation"], args["training"]
    assert adapt["training_mode"] == "lora" and (adapt["lora_rank"], adapt["lora_alpha"]) == (4, 8)
    assert adapt["trainable"] == TRAINABLE and adapt["modules_to_save"] == MODULES_TO_SAVE
    assert train["eval_strategy"] in ("steps", "no") and train["warmup_steps"] == 0.05
    assert train["activation_checkpointing"] is True and train["seed"] == 12345
    assert args["model"]["torch_dtype"] == "float16"
    info = json.load(open(os.path.join(pt_out, "langadapt_model.json")))
    assert info["is_adapter"] and info["training_mode"] == "lora"


def test_seed_lines_parse_with_fp16(inputs):
    """--fp16 is accepted by both training scripts (CPU runs leave it out: mixed fp16 needs a GPU)."""
    from langadapt.args import (AdaptationArguments, ModelArguments, PretrainDataArguments, PretrainTrainingArguments,
                                SampleArguments)

    v = {**inputs, "dataset_dir": inputs["corpus"], "output_dir": os.path.join(inputs["root"], "parse_only")}
    argv = [t for t in seed_pt_line(v) if t not in ("--deepspeed", v["deepspeed"])]
    groups = (ModelArguments, AdaptationArguments, PretrainDataArguments, SampleArguments, PretrainTrainingArguments)
    try:
        training = parse_args(groups, argv)[-1]
    except Exception as e:  # transformers refuses fp16 without a GPU, naming the flag; the parser accepted it
        assert "fp16" in str(e).lower() or "gpu" in str(e).lower() or "cuda" in str(e).lower(), e
    else:
        assert training.fp16 and not training.bf16


@pytest.fixture(scope="module")
def sft_out(inputs, pt_out):
    v = {**inputs, "dataset_dir": inputs["sft"], "validation_file": inputs["dev"], "peft_model": pt_out,
         "output_dir": os.path.join(inputs["root"], "sft")}
    sft.main(on_cpu(seed_sft_line(v)) + TEST_SIZE)
    return v["output_dir"]


def test_seed_sft_line_trains_lora_without_use_lora(sft_out, pt_out):
    info = json.load(open(os.path.join(sft_out, "langadapt_model.json")))
    assert info["is_adapter"] and info["training_mode"] == "lora" and info["parent_adapters"] == []
    results = json.load(open(os.path.join(sft_out, "all_results.json")))
    assert "eval_loss" in results


def test_seed_inference_line(inputs, sft_out, tmp_path):
    data = tmp_path / "data"
    write_json_list(data / "fa" / "sentiment.json", bundled("fa", "sentiment", 2))
    pred = tmp_path / "pred"
    # inference.sh, verbatim: python3 inference.py --base_model ... --lora_model ... --with_prompt
    inference.main(["--base_model", inputs["model"], "--data_dir", str(data), "--lora_model", sft_out,
                    "--predictions_dir", str(pred), "--cache_dir", inputs["cache_dir"], "--with_prompt"])
    args = json.load(open(pred / "run_args.json"))
    assert args["inference"]["peft_path"] == sft_out and args["inference"]["with_prompt"] is True
    assert any(name.endswith(".jsonl") for _, _, files in os.walk(pred) for name in files)


def test_run_args_json_fed_back_reproduces_the_arguments(inputs, pt_out, tmp_path):
    """`script.py out/run_args.json` parses to the run's arguments; flags after it still override."""
    from langadapt.args import (AdaptationArguments, ModelArguments, PretrainDataArguments, PretrainTrainingArguments,
                                SampleArguments)
    from langadapt.runinfo import _as_dict

    groups = (ModelArguments, AdaptationArguments, PretrainDataArguments, SampleArguments, PretrainTrainingArguments)
    path = os.path.join(pt_out, "run_args.json")
    recorded = json.load(open(path))
    again = parse_args(groups, [path])
    for name, group in zip(("model", "adaptation", "data", "samples", "training"), again, strict=True):
        got = json.loads(json.dumps(_as_dict(group)))
        want = {k: v for k, v in recorded[name].items()}
        differ = {k: (want[k], got.get(k)) for k in want if got.get(k) != want[k]}
        assert not differ, f"{name}: {differ}"
    overridden = parse_args(groups, [path, "--max_steps", "7", "--output_dir", str(tmp_path / "again")])
    assert overridden[-1].max_steps == 7 and overridden[1].lora_rank == 4

"""inference/export_gguf.py: a merged folder to GGUF with llama.cpp's converter; llama.cpp runs it (slow test)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from _sft_helpers import load_script, one_torch_thread  # noqa: F401 (autouse fixture)
import tiny
from langadapt.cli import UsageError
from langadapt.gguf_export import find_converter, read_gguf
from langadapt.hf_normalizer import attach_normalizer, has_normalizer
from langadapt.model_card import python_snippets, write_model_card
from langadapt.normalize import NormalizerConfig, normalize
from langadapt.portable import set_trained_chat_template

export = load_script("inference/export_gguf.py")
converter = pytest.mark.skipif(find_converter() is None, reason="llama.cpp's converter not fetched "
                               "(python -c 'from langadapt.gguf_export import fetch_converter; fetch_converter()')")


def merged_like(tokenizer_dir: str, out: str) -> str:
    """A tiny Llama with the trained-prompt chat template and the Persian normalizer, as merge_lora.py writes."""
    tiny.make_tiny_llama(tokenizer_dir, out)
    tok = AutoTokenizer.from_pretrained(out)
    set_trained_chat_template(tok, "alpaca")
    tok.save_pretrained(out)
    NormalizerConfig().save(out)
    attach_normalizer(out)
    return out


@converter
def test_export_writes_both_types_with_vocabulary_and_chat_template(tmp_path, sp_base_dir):
    model = merged_like(sp_base_dir, str(tmp_path / "merged"))
    out = str(tmp_path / "gguf")
    report = export.main(["--model_dir", model, "--output_dir", out, "--no_fetch"])
    assert sorted(os.listdir(out)) == ["export_report.json", "langadapt_normalizer.json", "model-f16.gguf",
                                       "model-q8_0.gguf"]
    tok = AutoTokenizer.from_pretrained(model)
    for name in ("model-f16.gguf", "model-q8_0.gguf"):
        meta = read_gguf(os.path.join(out, name))
        assert meta["architecture"] == "llama" and meta["chat_template"] == tok.chat_template
        assert meta["tokens"][: len(tok)] == tok.convert_ids_to_tokens(list(range(len(tok))))
    assert report.chat_template_included and has_normalizer(model)  # the model folder itself is untouched
    assert os.path.getsize(os.path.join(out, "model-q8_0.gguf")) < os.path.getsize(os.path.join(out, "model-f16.gguf"))


@converter
def test_a_model_the_converter_cannot_represent_is_refused_and_nothing_written(tmp_path, bpe_base_dir):
    """A byte-level BPE tokenizer llama.cpp does not know (its pre-tokenizer hash is not in the converter)."""
    model = merged_like(bpe_base_dir, str(tmp_path / "merged"))
    with pytest.raises(UsageError, match="cannot represent this model"):
        export.main(["--model_dir", model, "--output_dir", str(tmp_path / "gguf"), "--no_fetch"])
    assert not os.path.exists(tmp_path / "gguf")


def test_bad_input_is_refused_before_anything_runs(tmp_path, sp_base_dir):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(UsageError, match="merge it first"):
        export.main(["--model_dir", str(adapter), "--output_dir", str(tmp_path / "o")])
    with pytest.raises(UsageError, match="does not exist"):
        export.main(["--model_dir", str(tmp_path / "nope"), "--output_dir", str(tmp_path / "o")])
    with pytest.raises(UsageError, match="--outtypes"):
        export.main(["--model_dir", str(adapter), "--output_dir", str(tmp_path / "o"), "--outtypes", "q4_k"])
    with pytest.raises(UsageError, match="convert_hf_to_gguf.py"):
        export.main(["--model_dir", merged_like(sp_base_dir, str(tmp_path / "m")), "--output_dir",
                     str(tmp_path / "o"), "--converter_dir", str(tmp_path)])
    assert not os.path.exists(tmp_path / "o")


def llama_cpp_or_fail():
    """llama-cpp-python: `make test` installs it (`make llama-cpp`), and there (LANGADAPT_REQUIRE_LLAMA_CPP=1) a
    missing module fails instead of skipping."""
    try:
        import llama_cpp
    except ImportError as e:
        if os.environ.get("LANGADAPT_REQUIRE_LLAMA_CPP") == "1":
            pytest.fail(f"llama_cpp is not importable ({e}); run `make llama-cpp` (LANGADAPT_REQUIRE_LLAMA_CPP=1)")
        pytest.skip(f"llama_cpp is not importable ({e}); `make llama-cpp` builds it")
    return llama_cpp


def extended_smollm2(root, persian_lines) -> str:
    """SmolLM2 with a Persian add-on vocabulary merged in by the tokenizer stage and its table grown and saved by
    langadapt (sub-token-mean rows, padded to 64 rows: the saved tokenizer ends in reserved tokens), as a full
    pretraining run would leave it before its first step."""
    from langadapt.args import AdaptationArguments, ModelArguments
    from langadapt.modeling import prepare_model, save_model

    import smollm

    base = str(root / "smollm2")
    smollm.convert_gguf(smollm.gguf_path(), base)
    corpus = root / "fa.txt"
    corpus.write_text("\n".join(persian_lines[:2000]) + "\n", encoding="utf-8")
    load_script("tokenizer/extract_vocab.py").main(["--train_file", str(corpus), "--vocab_size", "1000",
                                                    "--base_tokenizer", base, "--output_dir", str(root / "extra")])
    load_script("tokenizer/merge.py").main(["--base_tokenizer", base, "--extra_model", str(root / "extra"),
                                            "--output_dir", str(root / "tok")])
    prepared = prepare_model(ModelArguments(model_name_or_path=base, tokenizer_name_or_path=str(root / "tok")),
                             AdaptationArguments(training_mode="full"))
    out = str(root / "extended")
    save_model(prepared.model, prepared.tokenizer, out, prepared.info, tokenizer_dir=str(root / "tok"))
    shutil.rmtree(base)
    return out


@pytest.mark.slow
@converter
@pytest.mark.parametrize("variant", ["base", "extended"])
def test_llama_cpp_runs_the_exported_smollm2(variant, tmp_path, persian_lines, english_lines):
    """The bundled SmolLM2 (the demo's base) as it is and with a Persian vocabulary merged in (new rows, reserved
    tokens), with the Persian normalizer and the Alpaca chat template: llama.cpp tokenizes Persian and English lines
    exactly as the HF tokenizer does (raw text normalized as in training), and greedy decoding starts with the same
    tokens as transformers."""
    llama_cpp = llama_cpp_or_fail()
    import torch
    from transformers import AutoModelForCausalLM

    import smollm
    from langadapt.portable import vocab_size
    from langadapt.templates import build_prompt

    if variant == "base":
        model_dir = str(tmp_path / "smollm2")
        smollm.convert_gguf(smollm.gguf_path(), model_dir)
        NormalizerConfig().save(model_dir)
    else:
        model_dir = extended_smollm2(tmp_path, persian_lines)
    tok = AutoTokenizer.from_pretrained(model_dir)
    set_trained_chat_template(tok, "alpaca")
    tok.save_pretrained(model_dir)
    attach_normalizer(model_dir)
    out = model_dir + "_gguf"  # where the model card's llama.cpp snippet looks
    report = export.main(["--model_dir", model_dir, "--output_dir", out, "--no_fetch"])
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    rows = model.get_input_embeddings().weight.shape[0]
    assert report.vocab_size == rows == len(tok)
    if variant == "extended":
        assert vocab_size(tok) < rows and vocab_size(tok) > 49152  # new pieces, then reserved tokens
    llm = llama_cpp.Llama(model_path=os.path.join(out, "model-f16.gguf"), n_ctx=512, verbose=False, seed=0)
    fa_tokens = 0
    for line in persian_lines[-100:] + english_lines[:100]:  # Persian lines the add-on vocabulary was not trained on
        text = normalize(line)
        want = tok(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) == want, text
        fa_tokens += sum(i >= 49152 for i in want)
    assert (fa_tokens > 100) == (variant == "extended")  # the extended GGUF really uses the new pieces
    for instruction in ("What is the capital of France?", "Write one sentence about the sea.",
                        normalize("پایتخت ایران کجاست؟")):
        prompt = build_prompt(instruction, None, "alpaca", tok)
        ids = tok(prompt)["input_ids"]
        want = model.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False)[0, len(ids):].tolist()
        got = []
        for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            got.append(token)
            if len(got) == 4:
                break
        assert got[:2] == want[:2], instruction
    assert llm.metadata["tokenizer.chat_template"] == tok.chat_template  # what create_chat_completion renders
    chat = llm.create_chat_completion(messages=[{"role": "user", "content": "What is the capital of France?"}],
                                      max_tokens=4, temperature=0)
    assert chat["choices"][0]["finish_reason"] in ("length", "stop")
    del llm
    # The model card's llama.cpp snippet, as a user runs it: another directory, no langadapt on the path.
    card = open(write_model_card(model_dir), encoding="utf-8").read()
    (snippet,) = [s for s in python_snippets(card) if "from llama_cpp import" in s]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr[-3000:]
    shutil.rmtree(model_dir)
    shutil.rmtree(out)

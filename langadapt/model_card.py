"""Model cards (``README.md`` with the Hugging Face metadata header) for every adapter and merged folder.

PEFT writes an empty template card into adapter folders; a merged folder had none. :func:`write_model_card` reads
what the folder and its inputs record (``langadapt_model.json``, ``langadapt_lineage.json``, ``run_args.json``,
``all_results.json``, the tokenizer's ``merge_report.json``, ``merge_report.json`` of a merge) and writes a card
with: the base model, the vocabulary extension (new pieces, tokens per word before/after), the training stages and
data, the evaluation numbers when known, what the tokenizer.json normalizer cannot express, and loading snippets
for transformers, PEFT, vLLM and llama.cpp. The Python snippets are run by tests/test_portable.py, from another
working directory, as a new user would paste them (vLLM needs a GPU and is not run).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from langadapt.hf_normalizer import NOT_EXPRESSIBLE
from langadapt.io import write_text
from langadapt.lineage import LINEAGE_FILE, read_lineage
from langadapt.modeling import MODEL_INFO_FILE, TOKENIZER_INFO_FILE, ModelInfo
from langadapt.portable import RESERVED_TOKEN, pad_multiple, reserved_rows, resize_call
from langadapt.templates import load_template_name

CARD_FILE = "README.md"
EXAMPLE_INSTRUCTION = "یک بیت از حافظ بنویس."
EXAMPLE_TEXT = "حافظ شیرازی شاعری بود که"


def _json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _tokenizer_report(folder: str, run: dict) -> dict | None:
    """The tokenizer stage's ``merge_report.json``: beside the folder's tokenizer, or in the tokenizer folder the
    training run used."""
    candidates = [folder]
    tok = (run.get("model") or {}).get("tokenizer_name_or_path")
    if tok:
        candidates.append(tok)
    info = ModelInfo.from_dir(folder)
    for adapter in reversed(info.merged_adapters if info else []):  # a merged model: its adapters' runs
        a_tok = ((_json(os.path.join(adapter, "run_args.json")) or {}).get("model") or {}).get("tokenizer_name_or_path")
        if a_tok:
            candidates.append(a_tok)
    for c in candidates:
        report = _json(os.path.join(c, "merge_report.json"))
        if report and "base_vocab_size" in report:
            return report
    return None


def _fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _header(meta: dict[str, Any]) -> str:
    lines = ["---"]
    for key, value in meta.items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"- {v}" for v in value]
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines + ["---", ""])


def _vocabulary_section(info: ModelInfo | None, report: dict | None) -> list[str]:
    out = ["## Vocabulary", ""]
    if report:
        out.append(f"The base tokenizer ({report['base_vocab_size']} tokens) was extended with "
                   f"{report['new_pieces']} {report.get('kind', '')} pieces (ids {report['new_token_ids'][0]}.."
                   f"{report['new_token_ids'][1] - 1}) to {report['merged_vocab_size']} tokens.")
        rows = [(name, e) for name, e in (report.get("eval") or {}).items() if "base_tokens_per_word" in e]
        if rows:
            out += ["", "| held-out text | tokens/word before | tokens/word after |", "| --- | --- | --- |"]
            out += [f"| {os.path.basename(n)} | {e['base_tokens_per_word']:.3f} | {e['merged_tokens_per_word']:.3f} |"
                    for n, e in rows]
    elif info:
        out.append(f"Tokenizer of {info.tokenizer_size} tokens; the base model had {info.base_embedding_rows} "
                   "embedding rows.")
    if info:
        m = pad_multiple(info.tokenizer_size, info.embedding_rows)
        pad = f" ({info.tokenizer_size} tokens padded to a multiple of {m})" if m not in (None, 1) else ""
        out += ["", f"Embedding rows: {info.embedding_rows}{pad}; new rows initialised with `{info.embedding_init}`."]
        reserved = reserved_rows(info.tokenizer_size, info.embedding_rows, info.base_embedding_rows)
        if reserved:
            out[-1] += (f" The saved tokenizer ends in {reserved} reserved special tokens (`"
                        f"{RESERVED_TOKEN.format(0)}` ...), one per padding row, so `len(tokenizer)` equals the "
                        "rows (PEFT's `AutoPeftModelForCausalLM` resizes to it); text never maps to them.")
    return out + [""]


def _training_section(info: ModelInfo | None, run: dict, lineage) -> list[str]:
    out = ["## Training", ""]
    if info:
        out.append(f"- mode: `{info.training_mode}`")
    data = run.get("data") or {}
    for key in ("dataset_dir", "validation_file", "template", "max_seq_length", "block_size"):
        if data.get(key) not in (None, "", []):
            out.append(f"- {key}: `{data[key]}`")
    training = run.get("training") or {}
    for key in ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                "gradient_accumulation_steps"):
        if training.get(key) not in (None, -1):
            out.append(f"- {key}: {training[key]}")
    for rec in lineage.continued_from:
        out.append(f"- continued from the adapter `{rec['path']}` (holds its training: do not apply both)")
    for rec in lineage.parents:
        out.append(f"- trained on top of `{rec['path']}`, merged into the base first (apply it before this one)")
    if info and info.merged_adapters:
        out += ["", "Merged adapters, in order:", "", "| adapter | mode | data | template | eval_loss |",
                "| --- | --- | --- | --- | --- |"]
        for a in info.merged_adapters:
            a_run = _json(os.path.join(a, "run_args.json")) or {}
            a_info = ModelInfo.from_dir(a)
            a_data = a_run.get("data") or {}
            a_results = _json(os.path.join(a, "all_results.json")) or {}
            loss = _fmt(a_results["eval_loss"]) if "eval_loss" in a_results else "-"
            out.append(f"| `{a}` | {a_info.training_mode if a_info else '?'} | {a_data.get('dataset_dir') or '?'} | "
                       f"{a_data.get('template') or '-'} | {loss} |")
    commit = next((v.get("git_commit") for v in run.values() if isinstance(v, dict) and v.get("git_commit")), None)
    if commit:
        out.append(f"- langadapt commit: `{commit}`")
    return out + [""]


def _evaluation_section(folder: str) -> list[str]:
    results = _json(os.path.join(folder, "all_results.json")) or {}
    keys = [k for k in ("eval_loss", "eval_perplexity", "perplexity", "train_loss") if k in results]
    merge = _json(os.path.join(folder, "merge_report.json")) or {}
    if not keys and merge.get("max_abs_diff") is None:
        return []
    out = ["## Evaluation", "", "| metric | value |", "| --- | --- |"]
    out += [f"| {k} | {_fmt(results[k])} |" for k in keys]
    if merge.get("max_abs_diff") is not None:
        out.append(f"| merged vs adapters, max abs logit difference | {_fmt(merge['max_abs_diff'])} |")
    return out + [""]


def _generate_lines(chat: bool, model_var: str = "model") -> list[str]:
    """Greedy generation: through the chat template for instruction-tuned folders, plain text otherwise."""
    if chat:
        prepare = [f"messages = [{{\"role\": \"user\", \"content\": \"{EXAMPLE_INSTRUCTION}\"}}]",
                   "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, "
                   "return_tensors=\"pt\", return_dict=True)"]
    else:
        prepare = [f"inputs = tokenizer(\"{EXAMPLE_TEXT}\", return_tensors=\"pt\")"]
    return prepare + [
        f"out = {model_var}.generate(**inputs, max_new_tokens=32, do_sample=False)",
        "print(tokenizer.decode(out[0, inputs[\"input_ids\"].shape[1]:], skip_special_tokens=True))",
    ]


def _usage_adapter(folder: str, info: ModelInfo | None, lineage, chat: bool) -> list[str]:
    base = info.base_model_name_or_path if info else "BASE_MODEL"
    out = ["## Use", ""]
    if lineage.parents or (info and info.parent_adapters):
        out += ["This adapter was trained on a base with other adapters merged in: PEFT alone cannot rebuild it. "
                "Merge the chain with langadapt (`python inference/merge_lora.py --base_model "
                f"{base} --lora_model {folder} --output_dir MERGED`) and use the merged folder.", ""]
        return out
    # len(tokenizer) of the saved folder: langadapt.modeling.save_model pads it with reserved tokens
    saved = info.tokenizer_size + reserved_rows(info.tokenizer_size, info.embedding_rows, info.base_embedding_rows) \
        if info else 0
    call = resize_call(saved, info.embedding_rows, info.base_embedding_rows) if info else ""
    out += ["### PEFT", "", "The base model's embedding table must first get the adapter's rows"
            + (f" (`{call}`)." if call else "."), "", "```python", "import torch",
            "from peft import PeftModel", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            f"tokenizer = AutoTokenizer.from_pretrained(\"{folder}\")",
            f"model = AutoModelForCausalLM.from_pretrained(\"{base}\", dtype=torch.float32)"]
    if call:
        out.append(call)
    out += [f"model = PeftModel.from_pretrained(model, \"{folder}\")", *_generate_lines(chat), "```", ""]
    if info and (saved == info.embedding_rows or info.embedding_rows == info.base_embedding_rows):
        out += ["Or in one call (`AutoPeftModelForCausalLM` grows the table to `len(tokenizer)` itself):", "",
                "```python", "from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer", "",
                f"tokenizer = AutoTokenizer.from_pretrained(\"{folder}\")",
                f"model = AutoPeftModelForCausalLM.from_pretrained(\"{folder}\")", *_generate_lines(chat), "```", ""]
    elif info:
        out += [f"`AutoPeftModelForCausalLM` does not work for this adapter: it grows the table to `len(tokenizer)` "
                f"({saved}) rows, not the adapter's {info.embedding_rows}. Use the recipe above.", ""]
    out += ["### vLLM, TGI, llama.cpp", "",
            "Serving stacks do not load adapters that carry embedding tables. Merge first "
            f"(`python inference/merge_lora.py --base_model {base} --lora_model {folder} --output_dir MERGED`) "
            "and follow the merged model's card.", ""]
    return out


def _usage_merged(folder: str, chat: bool) -> list[str]:
    gguf = os.path.normpath(folder) + "_gguf"  # beside the model folder
    return [
        "## Use", "", "### transformers", "", "```python", "import torch",
        "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
        f"tokenizer = AutoTokenizer.from_pretrained(\"{folder}\")",
        f"model = AutoModelForCausalLM.from_pretrained(\"{folder}\", dtype=torch.float32)", *_generate_lines(chat),
        "```", "", "### vLLM", "", "```bash", f"vllm serve {folder}", "```", "",
        "The chat template is the prompt the model was instruction-tuned with, so `/v1/chat/completions` prompts it "
        "correctly.", "", "### llama.cpp / Ollama", "",
        f"Convert with `python inference/export_gguf.py --model_dir {folder} --output_dir {gguf}` (llama.cpp's own "
        "converter; f16 and q8_0), then `llama-cli -m " + os.path.join(gguf, "model-q8_0.gguf") + "`, or:", "",
        "```python", "from llama_cpp import Llama", "",
        f"llm = Llama(model_path=\"{os.path.join(gguf, 'model-q8_0.gguf')}\", n_ctx=512, verbose=False)",
        f"out = llm.create_chat_completion(messages=[{{\"role\": \"user\", \"content\": \"{EXAMPLE_INSTRUCTION}\"}}], "
        "max_tokens=32, temperature=0)",
        "print(out[\"choices\"][0][\"message\"][\"content\"])", "```", "",
    ]


def _normalizer_section(folder: str) -> list[str]:
    if not os.path.isfile(os.path.join(folder, "langadapt_normalizer.json")):
        return []
    return ["## Text normalization", "",
            "Training text was normalized (Arabic yeh/kaf to Persian, presentation forms folded, kashida, bidi marks "
            "and stray zero-width characters removed; `langadapt_normalizer.json`). `tokenizer.json` applies the "
            "same normalizer, so `AutoTokenizer` on raw text gives the ids training saw. What it cannot express:",
            "", *[f"- {item}" for item in NOT_EXPRESSIBLE], ""]


def render_model_card(folder: str, final_path: str | None = None) -> str:
    """The card text for an adapter or merged model folder (absolute paths, so the snippets run from anywhere).

    ``final_path``: where the folder will be once complete (a card written inside a temporary output folder)."""
    source = os.path.abspath(folder)
    folder = os.path.abspath(final_path or folder)
    info = ModelInfo.from_dir(source)
    run = _json(os.path.join(source, "run_args.json")) or {}
    is_adapter = os.path.isfile(os.path.join(source, "adapter_config.json"))
    lineage = read_lineage(source)
    report = _tokenizer_report(source, run)
    base = info.base_model_name_or_path if info else (run.get("model") or {}).get("model_name_or_path", "")
    base = os.path.abspath(base) if base and os.path.isdir(base) else base  # a merge given a relative base path
    tags = ["langadapt", "persian", "vocabulary-extension"] + ([info.training_mode] if info else [])
    meta: dict[str, Any] = {"library_name": "peft" if is_adapter else "transformers", "base_model": base,
                            "language": ["fa", "en"], "pipeline_tag": "text-generation", "tags": tags}
    recorded = load_template_name(source, default="")
    template = recorded or "(none recorded: not instruction-tuned)"
    chat = bool(recorded)
    kind = "PEFT adapter" if is_adapter else "merged model"
    lines = [_header(meta), f"# {os.path.basename(folder)}", "",
             f"A {kind} adapting `{base}` to Persian with langadapt. Prompt template: `{template}`"
             + (" (the tokenizer's chat template renders it)." if chat else "."), ""]
    lines += _vocabulary_section(info, report)
    lines += _training_section(info, run, lineage)
    lines += _evaluation_section(source)
    lines += _usage_adapter(folder, info, lineage, chat) if is_adapter else _usage_merged(folder, chat)
    lines += _normalizer_section(source)
    return "\n".join(lines).rstrip() + "\n"


def write_model_card(folder: str, final_path: str | None = None) -> str:
    """Write ``README.md`` into ``folder`` (replacing PEFT's empty template). Returns its path."""
    path = os.path.join(folder, CARD_FILE)
    write_text(path, render_model_card(folder, final_path))
    return path


def python_snippets(card: str) -> list[str]:
    """The ```python blocks of a card (what tests run)."""
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


__all__ = ["CARD_FILE", "LINEAGE_FILE", "MODEL_INFO_FILE", "TOKENIZER_INFO_FILE", "python_snippets",
           "render_model_card", "write_model_card"]

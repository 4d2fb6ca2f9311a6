"""Saved folders that work without langadapt: PEFT's own loading recipe and the trained prompt as chat template.

* :func:`record_absolute_base`: PEFT stores ``base_model_name_or_path`` as the path the base was loaded from, often
  relative to the directory training ran in, so ``AutoPeftModelForCausalLM`` fails from anywhere else. A local
  base folder is recorded absolute (a hub id stays as it is).
* :func:`resize_call`: the exact ``resize_token_embeddings`` call that gives a base model the embedding rows an
  adapter was saved with (the table may be padded to a multiple of 64), for model cards and for
  :func:`load_with_peft`, the documented recipe as code.
* :func:`pad_with_reserved` / :func:`vocab_size`: a table padded past the tokenizer (``--pad_vocab_to_multiple_of``)
  is saved with a tokenizer padded by reserved special tokens to the same size, as Llama-3 ships its 256
  ``<|reserved_special_token_*|>``. ``len(tokenizer)`` then equals the rows, which is all that
  ``AutoPeftModelForCausalLM`` (it resizes to ``len(tokenizer)``), vLLM and llama.cpp's converter look at. The rows
  and logits do not change; langadapt counts the tokenizer without them (:func:`vocab_size`).
* :func:`chat_template_for` / :func:`set_trained_chat_template`: the prompt template SFT trained with, as the
  tokenizer's Jinja ``chat_template``, so ``apply_chat_template(messages, add_generation_prompt=True)`` (and every
  OpenAI-style server) renders exactly the prompt ``inference/inference.py`` builds. A user message holds the
  instruction in ``content`` and, optionally, the Alpaca input in an ``input`` key.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re

from langadapt.templates import get_template

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
# Multiples tried when describing a padded table (powers of two: what people pad to).
_PAD_MULTIPLES = tuple(2 ** k for k in range(12, 0, -1))


def record_absolute_base(adapter_dir: str, base_model: str | None = None) -> str | None:
    """Rewrite ``adapter_config.json``'s ``base_model_name_or_path`` as an absolute path when it names a local folder.

    ``base_model``: the path the base was loaded from (default: the recorded one), resolved against the current
    directory. Returns the recorded value, or ``None`` when ``adapter_dir`` is not a PEFT adapter folder."""
    path = os.path.join(adapter_dir, ADAPTER_CONFIG)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    recorded = base_model or config.get("base_model_name_or_path")
    if recorded and os.path.isdir(recorded):
        recorded = os.path.abspath(recorded)
    if recorded != config.get("base_model_name_or_path"):
        config["base_model_name_or_path"] = recorded
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    return recorded


RESERVED_TOKEN = "<|langadapt_reserved_{}|>"
_RESERVED = re.compile(r"<\|langadapt_reserved_\d+\|>\Z")


def vocab_size(tokenizer) -> int:
    """``len(tokenizer)`` without the trailing reserved tokens :func:`pad_with_reserved` added (special added
    tokens named like :data:`RESERVED_TOKEN`): the ids text maps to, and what the table is sized and padded from."""
    n = len(tokenizer)
    added = tokenizer.added_tokens_decoder
    while n > 0 and n - 1 in added and added[n - 1].special and _RESERVED.match(str(added[n - 1])):
        n -= 1
    return n


def reserved_rows(tokenizer_size: int, rows: int, base_rows: int | None) -> int:
    """How many reserved tokens a tokenizer of ``tokenizer_size`` real tokens is saved with next to a table of
    ``rows``: the padding rows when langadapt grew the table past the base's ``base_rows``, else 0 (a base shipped
    with spare rows, e.g. Qwen, keeps its own tokenizer: the standard recipes never resize it)."""
    if rows <= tokenizer_size or (base_rows is not None and rows <= base_rows):
        return 0
    return rows - tokenizer_size


def pad_with_reserved(tokenizer, rows: int, base_rows: int | None = None) -> int:
    """Append reserved special tokens to ``tokenizer`` (in place) until ``len(tokenizer) == rows`` when
    :func:`reserved_rows` says so. Returns how many were added (0 when already padded).

    Names already in the vocabulary are skipped, so no existing token is shadowed."""
    from tokenizers import AddedToken

    size = vocab_size(tokenizer)
    want = reserved_rows(size, rows, base_rows) - (len(tokenizer) - size)
    if want <= 0:
        return 0
    vocab = tokenizer.get_vocab()
    names, i = [], 0
    while len(names) < want:
        name = RESERVED_TOKEN.format(len(tokenizer) - size + i)
        i += 1
        if name not in vocab:
            names.append(name)
    tokenizer.add_tokens([AddedToken(n, special=True, normalized=False) for n in names], special_tokens=True)
    if len(tokenizer) != size + reserved_rows(size, rows, base_rows):
        raise RuntimeError(f"padding the tokenizer to {rows} tokens gave {len(tokenizer)}")
    return len(names)


def tokenizer_to_save(tokenizer, rows: int, base_rows: int | None = None):
    """The tokenizer a folder with a table of ``rows`` is saved with: ``tokenizer`` itself, or a copy padded by
    :func:`pad_with_reserved` (the caller's tokenizer is never changed)."""
    size = vocab_size(tokenizer)
    if size + reserved_rows(size, rows, base_rows) <= len(tokenizer):
        return tokenizer
    padded = copy.deepcopy(tokenizer)
    pad_with_reserved(padded, rows, base_rows)
    return padded


def pad_multiple(tokenizer_size: int, rows: int) -> int | None:
    """The ``pad_to_multiple_of`` that turns ``tokenizer_size`` into ``rows`` (1 when equal, ``None`` when no
    power of two does, e.g. a base shipped with spare rows)."""
    if rows == tokenizer_size:
        return 1
    for m in _PAD_MULTIPLES:
        if -(-tokenizer_size // m) * m == rows:
            return m
    return None


def resize_call(tokenizer_size: int, rows: int, base_rows: int | None = None) -> str:
    """Python source of the call giving a base model ``rows`` embedding rows (``model`` and ``tokenizer`` in scope);
    empty when the base already has them."""
    if base_rows is not None and base_rows == rows:
        return ""
    m = pad_multiple(tokenizer_size, rows)
    if m == 1:
        return "model.resize_token_embeddings(len(tokenizer))"
    if m is not None:
        return f"model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of={m})"
    return f"model.resize_token_embeddings({rows})"


def load_with_peft(base_model: str, adapter_dir: str, tokenizer_size: int, rows: int, dtype=None):
    """PEFT's documented recipe, exactly as a model card gives it: base model, resize, ``PeftModel.from_pretrained``.

    No langadapt loading code is involved; tests compare its logits with the merged model's."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype or torch.float32)
    m = pad_multiple(tokenizer_size, rows)
    if model.get_input_embeddings().weight.shape[0] != rows:
        model.resize_token_embeddings(tokenizer_size if m is not None else rows, pad_to_multiple_of=m
                                      if m not in (None, 1) else None)
    return PeftModel.from_pretrained(model, adapter_dir)


def _literal(text: str) -> str:
    """A Jinja string literal (Jinja2 and llama.cpp's Jinja both read these escapes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _split_fields(fmt: str) -> tuple[str, str, str]:
    """``before{instruction}middle{input}after`` -> (before, middle, after); without ``{input}``, middle is ``""``."""
    before, rest = fmt.split("{instruction}", 1)
    if "{input}" in rest:
        middle, after = rest.split("{input}", 1)
        return before, middle, after
    return before, rest, ""


def _response_header(template) -> str:
    """What follows the instruction when it ends in a response header (Alpaca's ``\\n\\n### Response:\\n``): the
    generation prompt. ``""`` for templates without one."""
    tail = template.without_input.split("{instruction}", 1)[1]
    return tail if "### Response:" in tail else ""


def chat_template_for(template: str, bos_token: bool = False, after_bos: str = "") -> str | None:
    """The Jinja chat template rendering ``langadapt.templates.build_prompt`` for ``template``; ``None`` for
    ``chat`` (the tokenizer's own template was trained).

    ``bos_token``: start with ``{{ bos_token }}`` (when tokenizing a prompt adds BOS: ``apply_chat_template``
    tokenizes without special tokens), then ``after_bos`` (SentencePiece tokenizers need a space there: they prepend
    their ``▁`` only at the very start of the text, which BOS now is). Turns: an optional system message first (its
    text and a blank line before the prompt), then user turns (``content`` = instruction, optional ``input``) and
    assistant turns (the response, then EOS). The response header (Alpaca's ``### Response:``) is the generation prompt.
    """
    tpl = get_template(template)
    if tpl is None:
        return None
    header = _response_header(tpl)
    with_before, with_middle, with_after = _split_fields(tpl.with_input)
    plain_before, plain_after, _ = _split_fields(tpl.without_input)
    # Text after the fields, minus the generation prompt (rendered only when a response follows or is asked for).
    with_tail = with_after[: len(with_after) - len(header)] if header and with_after.endswith(header) else with_after
    plain_tail = plain_after[: len(plain_after) - len(header)] if header and plain_after.endswith(header) \
        else plain_after
    lit = _literal
    return (
        (("{{- bos_token -}}" + (f"{{{{- {lit(after_bos)} -}}}}" if after_bos else "")) if bos_token else "")
        + "{%- for message in messages -%}"
        + "{%- if message['role'] == 'system' -%}{{- message['content'] | trim -}}{{- \"\\n\\n\" -}}"
        + "{%- elif message['role'] == 'user' -%}"
        + "{%- set inp = (message['input'] if message['input'] is defined and message['input'] else '') | trim -%}"
        + "{%- if inp -%}"
        + f"{{{{- {lit(with_before)} ~ (message['content'] | trim) ~ {lit(with_middle)} ~ inp ~ {lit(with_tail)} -}}}}"
        + "{%- else -%}"
        + f"{{{{- {lit(plain_before)} ~ (message['content'] | trim) ~ {lit(plain_tail)} -}}}}"
        + "{%- endif -%}"
        + f"{{%- if not loop.last or add_generation_prompt -%}}{{{{- {lit(header)} -}}}}{{%- endif -%}}"
        + "{%- elif message['role'] == 'assistant' -%}"
        + "{{- message['content'] | trim -}}{{- eos_token -}}{%- if not loop.last -%}{{- \"\\n\\n\" -}}{%- endif -%}"
        + "{%- endif -%}"
        + "{%- endfor -%}"
    )


def adds_bos(tokenizer) -> bool:
    """Whether tokenizing text with special tokens puts the BOS token first."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    with_special = tokenizer("x")["input_ids"]
    without = tokenizer("x", add_special_tokens=False)["input_ids"]
    return len(with_special) > len(without) and with_special[0] == bos


def set_trained_chat_template(tokenizer, template: str) -> bool:
    """Make ``template`` (what SFT trained with) the tokenizer's ``chat_template``; keep the tokenizer's own
    template for ``chat``. Returns whether it changed. Saved by ``tokenizer.save_pretrained``.

    The template is checked on two prompts: ``apply_chat_template`` must give exactly the ids SFT and inference
    give (:func:`langadapt.templates.encode_prompt`); a tokenizer for which no variant does is left as it was,
    with a warning."""
    from langadapt.templates import encode_prompt

    bos = adds_bos(tokenizer)
    previous = getattr(tokenizer, "chat_template", None)
    for after_bos in ("", " ") if bos else ("",):
        jinja = chat_template_for(template, bos_token=bos, after_bos=after_bos)
        if jinja is None:
            return False
        tokenizer.chat_template = jinja
        if all(_rendered_ids(tokenizer, ins, inp) == encode_prompt(ins, inp, template, tokenizer)
               for ins, inp in _CHECKS):
            if previous and previous != jinja:
                logger.info("chat_template: the tokenizer's own template replaced by the %r prompt SFT trained with",
                            template)
            return previous != jinja
    tokenizer.chat_template = previous
    logger.warning("chat_template: could not express the %r prompt as a chat template for this tokenizer; "
                   "apply_chat_template will not render the trained prompt", template)
    return False


_CHECKS = (("Say hello.", ""), ("Translate to English.", "سلام دنیا"))


def _rendered_ids(tokenizer, instruction: str, input: str) -> list[int]:
    text = tokenizer.apply_chat_template([{"role": "user", "content": instruction, "input": input}],
                                         add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])

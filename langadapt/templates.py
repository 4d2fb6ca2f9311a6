"""Prompt templates: defined once, used identically by SFT training and by inference.

The seed paper trained with ``"### Response: "`` and generated with ``"### Response:\\n\\n"``; a model then sees at
inference a prompt it never saw in training. Here both stages call :func:`build_prompt` with the same template
name, and the SFT stage records that name in its output folder (:func:`save_template_name`) so inference picks it
up by default.

Templates:

* ``alpaca`` (default): the Stanford Alpaca wording, with and without an ``input`` field.
* ``chat``: the tokenizer's own chat template (e.g. SmolLM2-Instruct's ChatML), one user turn holding the
  instruction and input, with the generation prompt appended. Fails clearly when the tokenizer has none.
* ``none``: instruction and input joined by a blank line, no wrapper (the seed's inference without
  ``--with_prompt``).

The response the model is trained on follows the prompt directly, and ends with the tokenizer's EOS token
(after the template's end-of-turn text for ``chat``: :func:`response_suffix`). Prompts are turned into token ids
by :func:`encode_prompts` in both stages, so special tokens are added the same way (a chat template writes its own).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

TEMPLATE_FILE = "langadapt_template.json"


@dataclass(frozen=True)
class PromptTemplate:
    """A plain-text template. ``{instruction}`` and ``{input}`` are filled in; ``stop_strings`` end generation."""

    name: str
    with_input: str
    without_input: str
    stop_strings: tuple[str, ...] = ()


ALPACA = PromptTemplate(
    name="alpaca",
    with_input=(
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
    ),
    without_input=(
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:\n"
    ),
    # A model that keeps going after its answer usually starts the next Alpaca block.
    stop_strings=("### Instruction:", "### Input:", "### Response:"),
)

NONE = PromptTemplate(name="none", with_input="{instruction}\n\n{input}", without_input="{instruction}")

TEMPLATES: dict[str, PromptTemplate | None] = {"alpaca": ALPACA, "none": NONE, "chat": None}
TEMPLATE_NAMES = tuple(TEMPLATES)


def get_template(name: str) -> PromptTemplate | None:
    """The template called ``name`` (``None`` for ``chat``, which lives in the tokenizer)."""
    if name not in TEMPLATES:
        raise ValueError(f"--template: unknown template {name!r}; choose one of {', '.join(TEMPLATE_NAMES)}")
    return TEMPLATES[name]


def build_prompt(instruction: str, input: str | None = None, template: str = "alpaca", tokenizer=None) -> str:
    """The prompt text for one example; the model's response is expected right after it."""
    instruction = instruction.strip()
    input = (input or "").strip()
    if template == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("--template chat: the tokenizer has no chat_template; use --template alpaca")
        content = f"{instruction}\n\n{input}" if input else instruction
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
    tpl = get_template(template)
    fmt = tpl.with_input if input else tpl.without_input
    return fmt.format(instruction=instruction, input=input)


def stop_strings(template: str, tokenizer=None) -> list[str]:
    """Strings that end generation for ``template`` besides EOS (chat templates end on their EOS token)."""
    tpl = get_template(template)
    return list(tpl.stop_strings) if tpl else []


def save_template_name(directory: str, template: str) -> None:
    """Record the template a model was instruction-tuned with, so inference uses the same one."""
    get_template(template)
    with open(os.path.join(directory, TEMPLATE_FILE), "w", encoding="utf-8") as f:
        json.dump({"template": template}, f)


def load_template_name(directory: str, default: str = "alpaca") -> str:
    """The template recorded in a model/adapter folder, or ``default``."""
    path = os.path.join(directory, TEMPLATE_FILE)
    if not os.path.isfile(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)["template"]


def prompt_adds_special_tokens(template: str) -> bool:
    """Whether tokenizing the prompt adds the tokenizer's special tokens (BOS).

    A chat template writes its own special tokens (BOS included when the model wants one), so the tokenizer must
    not add them a second time; plain-text templates need the tokenizer's BOS like any other text.
    """
    return template != "chat"


def encode_prompts(instructions, inputs, template: str = "alpaca", tokenizer=None) -> list[list[int]]:
    """Token ids of many prompts; SFT training and inference both tokenize prompts with this function.

    ``inputs`` may be ``None`` (no input for any example).
    """
    if inputs is None:
        inputs = [None] * len(instructions)
    texts = [build_prompt(i, x, template, tokenizer) for i, x in zip(instructions, inputs)]
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=prompt_adds_special_tokens(template))["input_ids"]]


def encode_prompt(instruction: str, input: str | None = None, template: str = "alpaca", tokenizer=None) -> list[int]:
    """Token ids of one prompt (see :func:`encode_prompts`)."""
    return encode_prompts([instruction], [input], template, tokenizer)[0]


_RESPONSE_SENTINEL = "\x00langadapt-response\x00"


def response_suffix(template: str, tokenizer=None) -> str:
    """Text the template puts after the model's response, before EOS (``""`` for plain-text templates).

    For ``chat`` it is read off the tokenizer's template by rendering a two-turn conversation (e.g. ChatML's
    ``<|im_end|>``), cut right after the EOS token when the template writes it, so SFT trains the model to close
    its turn exactly as the template does.
    """
    if template != "chat":
        get_template(template)
        return ""
    prompt = build_prompt("x", None, "chat", tokenizer)
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": _RESPONSE_SENTINEL}], tokenize=False
    )
    at = full.find(_RESPONSE_SENTINEL)
    if at < 0 or not full[:at] == prompt:
        # The template rewrites the assistant turn (e.g. adds reasoning tags): train on response + EOS only.
        return ""
    suffix = full[at + len(_RESPONSE_SENTINEL):]
    eos = getattr(tokenizer, "eos_token", None)
    if eos and eos in suffix:
        suffix = suffix[: suffix.index(eos) + len(eos)]
    return suffix

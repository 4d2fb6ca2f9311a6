"""Batched generation over test sets, resumable, plus log-likelihood ranking of labels and a one-turn REPL.

Why not the seed's loop (one example at a time, 512 new tokens for every task, exceptions swallowed):

* Prompts are sorted by token length and generated ``batch_size`` at a time with left padding and the KV cache, so
  a batch wastes little on padding and the GPU does one forward pass per new token for the whole batch.
* Generation stops at EOS and at the template's stop strings (a model that goes on usually starts the next
  ``### Instruction:`` block); ``max_new_tokens`` follows the task (a label needs a few tokens, a summary hundreds).
* Greedy batched output equals one-at-a-time output: ``generate`` derives position ids from the attention mask and
  its repetition penalty skips each row's left padding (pads are usually EOS; penalizing them would make a padded
  prompt stop later than the same prompt alone). A test pins this on a model where EOS ties the top token.
* Records are appended and flushed after every batch; a rerun skips the ids already written; an example that fails
  (alone: a failing batch is retried one example at a time) is written with its error and counted.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import torch

from langadapt.errors import InputError
from langadapt.evaldata import Example, append_records, open_predictions, prediction_record, sort_prediction_file
from langadapt.normalize import NormalizerConfig, normalize
from langadapt.templates import build_prompt, prompt_adds_special_tokens, stop_strings

logger = logging.getLogger(__name__)

# New-token caps per task when --max_new_tokens is not given, in tokens of the model's tokenizer. A label or an option
# letter needs a few tokens; 32 leaves room for a short lead-in ("The answer is B)") and for Persian label words,
# which an English-centric byte-level tokenizer splits into ~2 tokens per letter. A one-sentence Persian translation
# is ~100 letters (~200 tokens before vocabulary extension); a summary a few sentences. Unknown tasks: the seed's 512.
DEFAULT_MAX_NEW_TOKENS = {
    "entailment": 32,
    "multiple_choice": 32,
    "sentiment": 32,
    "translation": 256,
    "summary": 384,
}
SEED_MAX_NEW_TOKENS = 512
# End-of-turn tokens of common chat templates: generation under ``--template chat`` also stops at them.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


def default_max_new_tokens(task: str | None) -> int:
    """The new-token cap for a task family (``None``/unknown: the seed's 512)."""
    return DEFAULT_MAX_NEW_TOKENS.get(task or "", SEED_MAX_NEW_TOKENS)


def load_model(base_model: str, lora_models: Sequence[str], tokenizer_path: str | None, dtype: Any,
               device: str):
    """Model (eval mode, on ``device``) and tokenizer: :func:`langadapt.loading.load_with_adapters`.

    ``dtype``: ``--torch_dtype`` (``"auto"`` is the checkpoint's dtype; see :func:`langadapt.loading.torch_dtype`).
    """
    from langadapt.loading import load_with_adapters

    model, tokenizer = load_with_adapters(base_model, list(lora_models), tokenizer_path, dtype, arg="peft_path",
                                          base_arg="model_name_or_path")
    return model.to(device).eval(), tokenizer


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the first stop string, stripped."""
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut].strip()


@dataclass(frozen=True)
class DecodingOptions:
    """How to decode: greedy with the seed's repetition penalty unless ``do_sample``."""

    repetition_penalty: float = 1.1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0


class HFGenerator:
    """Batched ``model.generate`` with left padding, stop strings and a pad-aware repetition penalty."""

    def __init__(self, model, tokenizer, template: str, options: DecodingOptions = DecodingOptions(),
                 normalizer: NormalizerConfig | None = None) -> None:
        self.model, self.tokenizer, self.template, self.options = model, tokenizer, template, options
        # Left padding: every row's last prompt token sits at the end, where generation continues.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        self.normalizer = normalizer if normalizer is not None else NormalizerConfig.from_dir(
            tokenizer.name_or_path or ".", default=NormalizerConfig())
        self.stops = stop_strings(template, tokenizer)
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        if template == "chat":
            vocab = tokenizer.get_vocab()
            eos_ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
        self.eos_ids = sorted(eos_ids)
        # Positions the model was trained for; a longer prompt is an error, not a silent garbage answer.
        self.context = getattr(model.config, "max_position_embeddings", None)

    def prompt(self, ex: Example | str) -> str:
        """The templated, normalized prompt of an example (or of a bare instruction)."""
        instruction, inp = (ex, "") if isinstance(ex, str) else (ex.instruction, ex.input)
        return build_prompt(normalize(instruction, self.normalizer), normalize(inp, self.normalizer),
                            self.template, self.tokenizer)

    def encode(self, prompts: Sequence[str], **kwargs):
        """Tokenize prompts as SFT does (no added BOS for chat templates, which write their own)."""
        return self.tokenizer(list(prompts), add_special_tokens=prompt_adds_special_tokens(self.template), **kwargs)

    def _check_length(self, n_tokens: int) -> None:
        if self.context is not None and n_tokens >= self.context:
            raise ValueError(f"the prompt is {n_tokens} tokens; the model's context is {self.context} tokens")

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """Responses to ``prompts`` (one batch), cut at the first stop string."""
        from transformers import GenerationConfig

        enc = self.encode(prompts, return_tensors="pt", padding=True).to(self.model.device)
        self._check_length(int(enc["attention_mask"].sum(1).max()))
        o = self.options
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=o.do_sample, num_beams=1,
            temperature=o.temperature if o.do_sample else None, top_p=o.top_p if o.do_sample else None,
            top_k=None, eos_token_id=self.eos_ids, pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=self.stops or None, use_cache=True,
            # transformers 5 (as pinned) skips each row's left padding here; older releases penalized the pads (usually
            # EOS), so a padded prompt stopped later than the same prompt alone (tests/test_generation.py).
            repetition_penalty=o.repetition_penalty,
        )
        out = self.model.generate(**enc, generation_config=config, tokenizer=self.tokenizer)
        new = out[:, enc["input_ids"].shape[1]:]
        return [cut_at_stop(t, self.stops) for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]


class VLLMGenerator:
    """The same interface on vLLM (merged models on a CUDA GPU); vLLM batches and caches by itself."""

    def __init__(self, model_path: str, tokenizer_path: str | None, template: str, options: DecodingOptions,
                 seed: int, dtype: str) -> None:
        from transformers import AutoTokenizer
        from vllm import LLM

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or model_path)
        self.llm = LLM(model=model_path, tokenizer=tokenizer_path or model_path, seed=seed, dtype=dtype)
        self.template, self.options = template, options
        self.normalizer = NormalizerConfig.from_dir(tokenizer_path or model_path, default=NormalizerConfig())
        self.stops = stop_strings(template, self.tokenizer)

    prompt = HFGenerator.prompt
    encode = HFGenerator.encode

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        from vllm import SamplingParams

        o = self.options
        params = SamplingParams(
            max_tokens=max_new_tokens, temperature=o.temperature if o.do_sample else 0.0,
            top_p=o.top_p if o.do_sample else 1.0, repetition_penalty=o.repetition_penalty, stop=self.stops or None,
        )
        # Token ids, not text: vLLM would add BOS to a chat prompt that already has one.
        ids = [{"prompt_token_ids": i} for i in self.encode(prompts)["input_ids"]]
        outs = self.llm.generate(ids, params, use_tqdm=False)
        return [cut_at_stop(r.outputs[0].text, self.stops) for r in outs]


def check_vllm(lora_models: Sequence[str]) -> None:
    """Fail with a clear message when ``--backend vllm`` cannot run here."""
    import importlib.util

    if lora_models:
        raise InputError("--backend vllm runs merged models only; merge the adapters with inference/merge_lora.py "
                         "and pass the merged folder as --model_name_or_path (or use --backend hf)",
                         arg="backend", value="vllm")
    if importlib.util.find_spec("vllm") is None:
        raise InputError("--backend vllm: the vllm package is not installed; `pip install vllm` on a CUDA machine, "
                         "or use --backend hf (the default)", arg="backend", value="vllm")
    if not torch.cuda.is_available():
        raise InputError("--backend vllm needs a CUDA GPU and none is visible; use --backend hf (the default)",
                         arg="backend", value="vllm")


class LoglikRanker:
    """Answers a classification example with the candidate label the model finds most likely after the prompt.

    Score of a candidate = sum of the log-probabilities of its tokens given the prompt (no length normalization:
    label words are a few tokens each). Small or base models rarely emit a clean label; ranking still measures what
    they know. Candidates are the distinct gold answers of the file, each in its most common spelling.
    """

    def __init__(self, generator: HFGenerator, candidates: Sequence[str]) -> None:
        self.gen, self.candidates = generator, list(candidates)
        self.tokenizer = tok = generator.tokenizer
        self.prompt, self.encode = generator.prompt, generator.encode
        self.cand_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in self.candidates]

    @torch.inference_mode()
    def rank(self, prompt: str) -> str:
        model, tok = self.gen.model, self.gen.tokenizer
        p = self.encode([prompt])["input_ids"][0]
        self.gen._check_length(len(p) + max(map(len, self.cand_ids)))
        seqs = [p + c for c in self.cand_ids]
        width = max(map(len, seqs))
        pad = tok.pad_token_id
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=model.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=model.device)
        logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        scores = []
        for row, c in enumerate(self.cand_ids):
            # Token at position t is predicted by the logits at t - 1.
            pos = torch.arange(len(p) - 1, len(p) - 1 + len(c), device=model.device)
            scores.append(float(logprobs[row, pos, torch.tensor(c, device=model.device)].sum()))
        return self.candidates[max(range(len(scores)), key=scores.__getitem__)]

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        return [self.rank(p) for p in prompts]


def label_candidates(examples: Sequence[Example], canonical: Callable[[Any], str | None]) -> list[str]:
    """One spelling per distinct canonical gold label: the most common raw form in the file."""
    forms: dict[str, Counter] = {}
    for ex in examples:
        if ex.gold is None:
            raise InputError(f"record {ex.id} has no gold \"output\"; --scoring loglik needs the label set",
                             arg="scoring", value="loglik")
        key = canonical(ex.gold)
        if key is not None:
            forms.setdefault(key, Counter())[str(ex.gold).strip()] += 1
    return [c.most_common(1)[0][0] for _, c in sorted(forms.items())]


@dataclass
class FileSummary:
    """What one test file's run did."""

    key: str
    n: int
    skipped: int
    generated: int
    failed: int
    seconds: float

    def line(self) -> str:
        rate = self.generated / self.seconds if self.seconds > 0 else math.inf
        return (f"{self.key}: {self.n} examples ({self.skipped} already done, {self.generated} generated, "
                f"{self.failed} failed) in {self.seconds:.1f}s, {rate:.2f} examples/s")


def _answer_batch(generator, batch: list[Example], prompts: list[str], max_new_tokens: int) -> list[dict[str, Any]]:
    """Records for one batch; when the batch fails, each example is retried alone so only real failures fail."""
    try:
        return [prediction_record(ex, out) for ex, out in zip(batch, generator.generate(prompts, max_new_tokens))]
    except Exception as batch_error:  # noqa: BLE001 - any failure is retried per example, then recorded
        if len(batch) == 1:
            logger.warning("example %d failed: %s", batch[0].id, batch_error)
            return [prediction_record(batch[0], None, f"{type(batch_error).__name__}: {batch_error}")]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return [r for ex, p in zip(batch, prompts) for r in _answer_batch(generator, [ex], [p], max_new_tokens)]


def run_testset(generator, examples: list[Example], path: str, key: str, max_new_tokens: int, batch_size: int,
                progress: bool = True) -> FileSummary:
    """Answer every example not yet in the prediction file ``path``; append each batch as it finishes."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    f: TextIO
    f, done = open_predictions(path, examples)
    todo = [ex for ex in examples if ex.id not in done]
    prompts = {ex.id: generator.prompt(ex) for ex in todo}
    ids = generator.encode([prompts[ex.id] for ex in todo])["input_ids"] if todo else []
    lengths = {ex.id: len(i) for ex, i in zip(todo, ids)}
    # Longest first: similar lengths share a batch (little padding) and a memory error shows up at once.
    todo.sort(key=lambda ex: (-lengths[ex.id], ex.id))
    failed = 0
    with f, tqdm(total=len(todo), desc=key, unit="ex", disable=not progress or not todo) as bar:
        for i in range(0, len(todo), batch_size):
            batch = todo[i:i + batch_size]
            records = _answer_batch(generator, batch, [prompts[ex.id] for ex in batch], max_new_tokens)
            failed += sum("error" in r for r in records)
            append_records(f, records)
            bar.update(len(batch))
    if not failed:
        sort_prediction_file(path)
    return FileSummary(key, len(examples), len(done), len(todo) - failed, failed, time.perf_counter() - start)


def repl(generator, max_new_tokens: int, stdin: TextIO, stdout: TextIO, show_prompt: bool = False) -> int:
    """Single-turn chat: every non-blank line of ``stdin`` is an instruction, answered with the same template.

    Ends at end of input or on ``exit``/``quit``. Returns the number of answers written.
    """
    answered = 0
    while True:
        if show_prompt:
            stdout.write("> ")
            stdout.flush()
        line = stdin.readline()
        if not line or line.strip() in ("exit", "quit"):
            return answered
        if not line.strip():
            continue
        stdout.write(generator.generate([generator.prompt(line.strip())], max_new_tokens)[0] + "\n")
        stdout.flush()
        answered += 1


"""Export a merged model folder to GGUF for llama.cpp / Ollama / LM Studio, with llama.cpp's own converter.

    python inference/export_gguf.py --model_dir outputs/merged --output_dir outputs/gguf [--outtypes f16,q8_0]

Writes ``model-f16.gguf``, ``model-q8_0.gguf`` (one per ``--outtypes``), ``export_report.json`` and the
``langadapt_normalizer.json`` of the model. The chat template (the prompt SFT trained) is inside the GGUF files.
The converter comes from the ``llama-cpp-python`` sdist on PyPI (downloaded once with pip into ~/.cache/langadapt)
or from a llama.cpp checkout (``--converter_dir``). llama.cpp does not apply tokenizer.json's normalizer: normalize
Persian input with ``langadapt.normalize.normalize`` before it reaches the GGUF model. See langadapt/gguf_export.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from langadapt.cli import UsageError, parse_args, run_main, setup_logging
from langadapt.errors import InputError
from langadapt.gguf_export import LLAMA_CPP_PYTHON_VERSION, OUTTYPES, export_gguf

logger = logging.getLogger("export_gguf")


@dataclass
class ExportArguments:
    """Arguments of ``inference/export_gguf.py``."""

    model_dir: str | None = field(default=None, metadata={
        "help": "Merged model folder (the output of inference/merge_lora.py, or any HF causal LM folder). Required."})
    output_dir: str | None = field(default=None, metadata={"help": "Folder for the GGUF files. Required."})
    outtypes: str = field(default="f16,q8_0", metadata={
        "help": f"Comma-separated GGUF types, one file each: {', '.join(OUTTYPES)}."})
    converter_dir: str | None = field(default=None, metadata={
        "help": "Folder with llama.cpp's convert_hf_to_gguf.py (a llama.cpp checkout). Default: $LLAMA_CPP_DIR, "
                f"else the converter of llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}, fetched once with pip."})
    no_fetch: bool = field(default=False, metadata={
        "help": "Never download the converter (offline nodes): fail unless it is already there."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an existing --output_dir."})

    def __post_init__(self) -> None:
        for name in ("model_dir", "output_dir"):
            if not getattr(self, name):
                raise ValueError(f"--{name} is required")
        bad = [t for t in self.types if t not in OUTTYPES]
        if bad or not self.types:
            raise ValueError(f"--outtypes: {','.join(bad) or 'empty'}; choose from {', '.join(OUTTYPES)}")

    @property
    def types(self) -> list[str]:
        return [t.strip() for t in self.outtypes.split(",") if t.strip()]


def main(argv=None):
    # 1. arguments
    (args,) = parse_args((ExportArguments,), argv, description=__doc__)
    setup_logging()
    # 2. convert each type, read it back, check vocabulary and chat template; the folder appears only when complete
    try:
        report = export_gguf(args.model_dir, args.output_dir, args.types, args.converter_dir,
                             fetch=not args.no_fetch, overwrite=args.overwrite_output_dir)
    except InputError as e:
        raise UsageError(e.render()) from None
    logger.info("GGUF files in %s: %s (architecture %s, %d tokens, chat template %s)", args.output_dir,
                ", ".join(report.files), report.architecture, report.vocab_size,
                "included" if report.chat_template_included else "absent")
    return report


if __name__ == "__main__":
    run_main(main)

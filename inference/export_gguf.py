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

from langadapt.cli import UsageError, parse_args, run_main, setup_logging
from langadapt.errors import InputError
from langadapt.args.inference import ExportArguments
from langadapt.gguf_export import export_gguf

logger = logging.getLogger("export_gguf")


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

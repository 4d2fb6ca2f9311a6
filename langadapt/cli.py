"""What every stage script shares: argument parsing, logging, and turning bad input into a clean exit.

A stage script looks like::

    def main(argv=None):
        args, = parse_args((MyArguments,), argv, description=__doc__)
        ...

    if __name__ == "__main__":
        run_main(main)

:func:`run_main` turns a :class:`UsageError` into ``error: <message>`` on stderr and exit status 2, with no
traceback: the message already names the file or flag and says what to do.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger("langadapt")

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: a missing or malformed file, a bad flag value. The message says how to fix it."""


def process_rank() -> int:
    """Global rank of this process under torchrun/Slurm/DeepSpeed launchers, 0 when run alone."""
    for var in ("RANK", "SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def setup_logging(level: int | None = None) -> None:
    """One logging setup for all stages: rank 0 logs at INFO, other ranks at WARNING (so logs are not N-fold)."""
    if level is None:
        level = logging.INFO if process_rank() == 0 else logging.WARNING
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        level=level,
        force=True,
    )
    for name in ("transformers", "datasets", "peft"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` keeps the line breaks of a script's docstring (its example commands) and shows each default."""


def parse_args(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    description: str | None = None,
) -> tuple[Any, ...]:
    """Parse ``argv`` into the given argument dataclasses with ``transformers.HfArgumentParser``.

    A single argument ending in ``.json`` is read as the whole configuration, as in transformers' examples.
    Validation errors raised in a dataclass's ``__post_init__`` (``ValueError``) become :class:`UsageError`.
    """
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(tuple(dataclass_types), description=description, formatter_class=HelpFormatter)
    try:
        if len(argv) == 1 and argv[0].endswith(".json"):
            if not os.path.isfile(argv[0]):
                raise UsageError(f"config file {argv[0]} does not exist")
            return tuple(parser.parse_json_file(os.path.abspath(argv[0])))
        return tuple(parser.parse_args_into_dataclasses(args=argv))
    except ValueError as e:
        raise UsageError(str(e)) from None


def end_distributed(barrier: bool = False) -> None:
    """Destroy torch.distributed's default process group, if this process made one, before the interpreter exits.

    The Trainer never tears it down. Left to interpreter shutdown, gloo's worker threads can still hold work whose
    tensors reference Python objects; freeing them during finalization aborts the process with ``terminate called
    without an active exception`` (SIGABRT, pytorch#179291) instead of its exit status. Seen once in CI on CPU
    under torchrun, after a preempted run's ``exit 75``. ``barrier=True`` first waits for every rank (only where
    every rank is known to get here, or it would hang). torch is not imported by this module: a script that never
    touched torch.distributed pays nothing.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    if barrier:
        dist.barrier()
    dist.destroy_process_group()


def run_main(main: Callable[[Sequence[str] | None], Any], argv: Sequence[str] | None = None) -> None:
    """Run a stage's ``main`` and exit: 0 on success, 2 with a one-line message on :class:`UsageError`.

    When ``main`` returns, a torch.distributed process group it started is destroyed (:func:`end_distributed`). Not
    when it raises: another rank may still be inside a collective, and destroying then can hang (torchtitan#1342);
    a failed run exits non-zero either way.
    """
    setup_logging()
    try:
        main(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    end_distributed()

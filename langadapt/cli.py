"""What every stage script shares: argument parsing, logging, and turning bad input into a clean exit.

A stage script looks like::

    def main(argv=None):
        args, = parse_args((MyArguments,), argv, description=__doc__)
        ...

    if __name__ == "__main__":
        run_main(main)

:func:`run_main` turns a :class:`UsageError` into ``error: <message>`` on stderr and exit status 2, with no
traceback: the message already names the file or flag and says what to do. A distributed worker (torchrun,
DeepSpeed) leaves with exactly its status (0, 2, or 75 after a preemption checkpoint), never a shutdown abort.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from langadapt.errors import InputError

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


def _distributed() -> Any | None:
    """``torch.distributed`` when this process has a default process group, else None (never imports torch)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def end_distributed() -> None:
    """Destroy torch.distributed's default process group, if this process made one (PyTorch's documented shutdown:
    pending collectives finish, no "process group has NOT been destroyed" warning). The Trainer never does it."""
    dist = _distributed()
    if dist is not None:
        dist.destroy_process_group()


def _exit_before_finalization(code: int) -> None:
    """Exit a distributed worker with ``code`` without Python's interpreter finalization.

    After the last collective a gloo worker thread can still hold the work's tensors; when it frees them it needs
    the GIL. If the main thread has begun finalizing by then, that thread is killed and the process dies with
    ``terminate called without an active exception`` (SIGABRT, -6) instead of ``code`` (pytorch#179291). It is a
    race, seen twice in CI on the 2-rank CPU tests (a preempted run that must exit 75 for the launcher to requeue,
    and a ZeRO-3 run that must exit 0). So: run the atexit handlers (logging's flush, experiment trackers' final sync)
    while the interpreter is whole, flush stdio, and leave with ``os._exit``, which has no finalization to race.
    """
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more can be said anyway
            pass
    os._exit(code)


def run_main(main: Callable[[Sequence[str] | None], Any], argv: Sequence[str] | None = None) -> None:
    """Run a stage's ``main`` and exit: 0 on success, 2 with a one-line message on :class:`UsageError`, or the
    status ``main`` exits with (75 after a preemption checkpoint).

    In a distributed worker (a torch.distributed process group exists) the process group is destroyed when ``main``
    returns, and the process exits through :func:`_exit_before_finalization` so its status is the one above and not
    a shutdown abort. The group is not destroyed when ``main`` fails: another rank may still be inside a collective,
    and destroying then can hang (torchtitan#1342). Other exceptions keep Python's traceback and exit status 1.
    """
    setup_logging()
    try:
        main(argv)
        code = 0
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        code = EXIT_USAGE
    except InputError as e:
        print(f"error: {e.render()}", file=sys.stderr)
        code = EXIT_USAGE
    except OSError as e:
        from langadapt.preflight import describe_os_error

        described = describe_os_error(e)
        if described is None:
            raise
        code, message = described
        print(f"error: {message}", file=sys.stderr)
    except SystemExit as e:
        if _distributed() is None or not isinstance(e.code, int):
            raise
        code = e.code
    if _distributed() is not None:
        if code == 0:
            end_distributed()
        _exit_before_finalization(code)
    if code:
        sys.exit(code)

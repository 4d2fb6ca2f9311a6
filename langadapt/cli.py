"""What every stage script shares: argument parsing, logging, and turning bad input into a clean exit.

A stage script looks like::

    def main(argv=None):
        args, = parse_args((MyArguments,), argv, description=__doc__)
        ...

    if __name__ == "__main__":
        run_main(main)

:func:`run_main` turns a :class:`langadapt.errors.InputError` (``UsageError`` is its old name) into
``error: --<arg>: <message>`` on stderr and exit status 2, with no traceback: the message names the file and says
what to do, the error's ``arg`` names the flag. A distributed worker (torchrun,
DeepSpeed) leaves with exactly its status (0, 2, or 75 after a preemption checkpoint), never a shutdown abort.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from langadapt.dist import rank
from langadapt.errors import InputError

logger = logging.getLogger("langadapt")

EXIT_USAGE = 2


# The library's bad-input error; the old name stays importable for code written against it.
UsageError = InputError
# Global rank (langadapt.dist.rank), under the name this module exported before langadapt.dist existed.
process_rank = rank


def setup_logging(level: int | None = None) -> None:
    """One logging setup for all stages: rank 0 logs at INFO, other ranks at WARNING (so logs are not N-fold)."""
    if level is None:
        level = logging.INFO if rank() == 0 else logging.WARNING
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        level=level,
        force=True,
    )
    for name in ("transformers", "datasets", "peft"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` keeps the line breaks of a script's docstring (its example commands) and shows each default.

    A default of ``None`` whose help already says what happens (``Default: ...``, e.g. ``--training_mode`` or
    ``--bf16``, resolved after parsing) is not shown as ``(default: None)``: the help text is the real default.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None and "Default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class CommaListAction(argparse.Action):
    """A list flag, stored as one comma-separated string (the seed's ``--trainable q_proj,v_proj`` convention).

    The one list convention of every script: comma-separated is the canonical form; space-separated values
    (``--trainable q_proj v_proj``) and a repeated flag (``--trainable q_proj --trainable v_proj``) are accepted and
    give the same value. Use with ``nargs="+"`` (the ``COMMA_LIST`` metadata); :class:`CommaSplitAction` is the same
    for a ``list[str]`` field.
    """

    as_list = False

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001 (argparse's signature)
        parts = [p.strip() for v in (values if isinstance(values, list) else [values]) for p in str(v).split(",")]
        # The first occurrence replaces the default (or a config file's value); later ones append to it. The
        # namespace cannot carry this mark: HfArgumentParser returns any attribute it does not know as an output.
        seen = self.__dict__.setdefault("_seen_in", set())
        previous = getattr(namespace, self.dest, None) if id(namespace) in seen else None
        if previous:
            parts = (list(previous) if self.as_list else previous.split(",")) + parts
        seen.add(id(namespace))
        parts = [p for p in parts if p]
        setattr(namespace, self.dest, parts if self.as_list else ",".join(parts) or None)


class CommaSplitAction(CommaListAction):
    """:class:`CommaListAction` for a ``list[str]`` field: ``--train_file a.txt,b.txt`` = ``--train_file a.txt
    b.txt`` = ``--train_file a.txt --train_file b.txt`` -> ``["a.txt", "b.txt"]``."""

    as_list = True


# Metadata for a dataclass field holding a list of names: ``field(default=None, metadata={**COMMA_LIST, "help": ...})``.
COMMA_LIST: dict[str, Any] = {"action": CommaListAction, "nargs": "+"}
# The same for a ``list[str]`` field.
COMMA_SPLIT_LIST: dict[str, Any] = {"action": CommaSplitAction, "nargs": "+"}
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
# Sections of run_args.json that record the run rather than set it: skipped when the file is fed back as a config.
PROVENANCE_KEYS = ("run", "resolved")


def read_config(path: str) -> dict[str, Any]:
    """A JSON or YAML config file as a mapping of flag names (without dashes) to values.

    ``run_args.json`` (written beside every run's outputs) is accepted as is: its argument groups (``model``,
    ``training``, ...) are flattened and its provenance (``run``, ``resolved``) is skipped.
    """
    if not os.path.isfile(path):
        raise UsageError(f"config file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            if path.endswith(".json"):
                import json

                config = json.load(f)
            else:
                import yaml

                config = yaml.safe_load(f) or {}
    except Exception as e:  # JSON/YAML syntax: the parser's message says where
        raise UsageError(f"config file {path} cannot be read: {e}") from None
    if not isinstance(config, dict):
        raise UsageError(f"config file {path} must hold a mapping of flag names to values, not {type(config).__name__}")
    return config


def _config_defaults(parser: argparse.ArgumentParser, config: dict[str, Any], path: str) -> dict[str, Any]:
    """Map a config's keys (flag names or aliases, or run_args.json groups of them) onto the parser's dests."""
    dests = {}
    for action in parser._actions:
        for option in action.option_strings:
            dests[option.lstrip("-")] = action
    defaults: dict[str, Any] = {}

    def add(key: str, value: Any) -> None:
        action = dests.get(key)
        if action is None:
            raise UsageError(f"config file {path}: unknown setting {key!r} (see --help for the flags)")
        if isinstance(action, CommaListAction):
            items = value if isinstance(value, list) else str(value).split(",") if value is not None else None
            if items is not None:
                items = [str(v).strip() for v in items if str(v).strip()]
                value = items if action.as_list else ",".join(items) or None
        action.required = False  # given by the config; a command-line flag still overrides it
        defaults[action.dest] = value

    for key, value in config.items():
        if key in dests:
            add(key, value)
        elif key in PROVENANCE_KEYS:
            continue
        elif isinstance(value, dict):  # a run_args.json argument group
            for sub_key, sub_value in value.items():
                add(sub_key, sub_value)
        else:
            add(key, value)
    return defaults


def parse_args(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    description: str | None = None,
) -> tuple[Any, ...]:
    """Parse ``argv`` into the given argument dataclasses with ``transformers.HfArgumentParser``.

    ``argv`` may start with a config file (``.json``, ``.yaml`` or ``.yml``: flag names without dashes as keys, or a
    run's ``run_args.json``); flags after it override its values (``script.py run.yaml --max_steps 2``). Validation
    errors raised in a dataclass's ``__post_init__`` (``ValueError``) become :class:`UsageError`.
    """
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(tuple(dataclass_types), description=description, formatter_class=HelpFormatter)
    if argv and not argv[0].startswith("-") and argv[0].endswith(CONFIG_SUFFIXES):
        path = argv.pop(0)
        parser.set_defaults(**_config_defaults(parser, read_config(path), path))
    try:
        return tuple(parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False))
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
    """Run a stage's ``main`` and exit: 0 on success, 2 with a one-line message on :class:`InputError`, or the
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

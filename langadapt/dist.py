"""Rank and world size of this process, read from the launcher's environment (never imports torch).

torchrun and DeepSpeed set ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``; under plain ``srun`` only Slurm's variables exist,
and MPI launchers set their own. The first variable set wins; a process started alone is rank 0 of 1.
"""

from __future__ import annotations

import os

_RANK_VARS = ("RANK", "SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK")
_LOCAL_RANK_VARS = ("LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK")
_WORLD_SIZE_VARS = ("WORLD_SIZE", "SLURM_NTASKS", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def _first_int(names: tuple[str, ...], default: int) -> int:
    for var in names:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return default


def rank() -> int:
    """Global rank of this process (0 when run alone)."""
    return _first_int(_RANK_VARS, 0)


def local_rank() -> int:
    """Rank of this process on its node (0 when run alone)."""
    return _first_int(_LOCAL_RANK_VARS, 0)


def world_size() -> int:
    """Number of processes in the job (1 when run alone)."""
    return _first_int(_WORLD_SIZE_VARS, 1)


def is_main_process() -> bool:
    """Whether this process is global rank 0, the one that logs at INFO and writes shared files."""
    return rank() == 0

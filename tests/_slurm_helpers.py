"""A real single-node Slurm for the tests, and small helpers to submit jobs and wait for them.

The session fixture :func:`slurm` runs ``tests/slurm/start_slurm.sh`` (which installs Debian's munge/slurmctld/slurmd/
slurm-client when missing and starts them by hand), and stops at the end only what it started. Tests are skipped,
with the reason, only when Slurm cannot be installed here; with ``LANGADAPT_REQUIRE_SLURM=1`` (CI) that is a failure.

Use in a test module::

    from _slurm_helpers import slurm  # noqa: F401  (the fixture)

    def test_x(slurm):
        job = slurm.submit(["slurm/report.sbatch"], env={...})
        info = slurm.wait(job)
        assert info["JobState"] == "COMPLETED", slurm.log_tail(info)

Exit codes come from ``scontrol show job`` (kept MinJobAge=600 s after the end; there is no slurmdbd/sacct here),
polled every half second: ``sbatch --wait`` polls after 2, 8, then every 32 s.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START = os.path.join(REPO_ROOT, "tests", "slurm", "start_slurm.sh")
STOP = os.path.join(REPO_ROOT, "tests", "slurm", "stop_slurm.sh")
CANNOT_INSTALL = 3  # start_slurm.sh's exit status when Slurm cannot be installed on this machine
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED"}
# The test node has no GPUs and 2 cores: override the launchers' #SBATCH GPU/CPU requests (command line wins).
TEST_SBATCH_ARGS = ["--gpus-per-node=0", "--cpus-per-task=1"]


class SlurmCluster:
    """Submit, poll and inspect jobs on the test cluster (``SLURM_CONF`` points at it)."""

    def __init__(self, slurm_conf: str) -> None:
        self.slurm_conf = slurm_conf

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment for Slurm commands: ours plus SLURM_CONF, minus any enclosing job's SLURM_* variables."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        env["SLURM_CONF"] = self.slurm_conf
        env.update(extra or {})
        return env

    def run(self, args: list[str], env: dict[str, str] | None = None, check: bool = True,
            cwd: str = REPO_ROOT) -> subprocess.CompletedProcess:
        proc = subprocess.run(args, env=self.env(env), cwd=cwd, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{shlex.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def submit(self, args: list[str], env: dict[str, str] | None = None, log_dir: str | None = None) -> str:
        """``sbatch --parsable`` with the test overrides; ``args`` are sbatch options then the script and its args.
        Returns the job id."""
        opts = ["sbatch", "--parsable", *TEST_SBATCH_ARGS]
        if log_dir:
            os.makedirs(log_dir, exist_ok=True)  # Slurm fails a job whose --output folder is missing
            opts.append(f"--output={log_dir}/%x-%j.out")
        out = self.run(opts + list(args), env=env).stdout.strip()
        return out.split(";")[0]

    def show(self, job_id: str) -> dict[str, str]:
        """``scontrol show job -o`` as a dict (JobState, ExitCode, Restarts, StdOut, ...); {} once forgotten."""
        proc = self.run(["scontrol", "show", "job", "-o", job_id], check=False)
        if proc.returncode != 0:
            return {}
        fields: dict[str, str] = {}
        for token in shlex.split(proc.stdout.strip()):
            key, sep, value = token.partition("=")
            if sep and key not in fields:
                fields[key] = value
        return fields

    def wait(self, job_id: str, timeout: float = 300, states: set[str] = FINAL_STATES) -> dict[str, str]:
        """Poll until the job reaches one of ``states``; returns its fields. Fails the test on timeout."""
        deadline = time.monotonic() + timeout
        info: dict[str, str] = {}
        while time.monotonic() < deadline:
            info = self.show(job_id)
            if info.get("JobState") in states:
                return info
            time.sleep(0.5)
        pytest.fail(f"job {job_id} not in {sorted(states)} after {timeout:.0f}s: {info.get('JobState')} "
                    f"({info.get('Reason')})\n{self.log_tail(info)}")

    @staticmethod
    def exit_code(info: dict[str, str]) -> int:
        """The batch script's exit status (ExitCode is ``status:signal``)."""
        return int(info.get("ExitCode", "0:0").split(":")[0])

    @staticmethod
    def log_tail(info: dict[str, str], lines: int = 60) -> str:
        path = info.get("StdOut", "")
        if not path or not os.path.isfile(path):
            return f"(no log at {path!r})"
        with open(path, encoding="utf-8", errors="replace") as f:
            return f"--- {path}\n" + "".join(f.readlines()[-lines:])


@pytest.fixture(scope="session")
def slurm():
    """The single-node test cluster, started once per session (and stopped at the end if this session started it)."""
    proc = subprocess.run(["bash", START, "--env"], capture_output=True, text=True, timeout=600)
    if proc.returncode == CANNOT_INSTALL:
        reason = f"Slurm cannot be installed here: {proc.stderr.strip()}"
        if os.environ.get("LANGADAPT_REQUIRE_SLURM") == "1":
            pytest.fail(reason + " (LANGADAPT_REQUIRE_SLURM=1)")
        pytest.skip(reason)
    if proc.returncode != 0:
        pytest.fail(f"tests/slurm/start_slurm.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    conf, started = None, False
    for line in proc.stdout.splitlines():
        if line.startswith("export SLURM_CONF="):
            conf = line.split("=", 1)[1].strip()
        if line.startswith("LANGADAPT_SLURM_STARTED=1"):
            started = True
    assert conf, proc.stdout
    yield SlurmCluster(conf)
    if started and os.environ.get("LANGADAPT_KEEP_SLURM") != "1":
        subprocess.run(["bash", STOP], capture_output=True, text=True, timeout=120)

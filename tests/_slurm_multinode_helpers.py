"""A real two-node Slurm for the multi-node tests: slurmctld and two slurmd, each in its own network namespace.

The session fixture :func:`two_nodes` runs ``tests/slurm/start_two_nodes.sh`` on a fresh folder under /tmp and, at the
end (also when a test failed), ``tests/slurm/stop_two_nodes.sh``, which stops every process left in the cluster's
namespaces and removes them. Nodes ``la2n1`` (10.213.0.2) and ``la2n2`` (10.213.0.3) exist only inside those
namespaces, so this cluster never collides with the single-node one of ``_slurm_helpers`` (or with another
two-node cluster). Client commands (sbatch, scontrol, scancel) run in the controller's namespace.

Tests are skipped, with the reason, only when this machine cannot run it (not root, no network namespaces, no
apt-get for Slurm); with ``LANGADAPT_REQUIRE_SLURM=1`` (CI) that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from _slurm_helpers import CANNOT_INSTALL, REPO_ROOT, SlurmCluster

SCRIPTS = os.path.join(REPO_ROOT, "tests", "slurm")


class TwoNodeCluster(SlurmCluster):
    """:class:`SlurmCluster` whose client commands run in the controller's network namespace; plus node control."""

    def __init__(self, state_dir: str, settings: dict[str, str]) -> None:
        super().__init__(settings["SLURM_CONF"])
        self.state_dir = state_dir
        self.ctl_netns = settings["CTL_NETNS"]
        self.nodes = settings["NODES"].split()
        self.node_netns = dict(zip(self.nodes, settings["NODE_NETNS"].split()))

    def run(self, args: list[str], env: dict[str, str] | None = None, check: bool = True,
            cwd: str = REPO_ROOT) -> subprocess.CompletedProcess:
        return super().run(["nsenter", f"--net=/run/netns/{self.ctl_netns}", *args], env=env, check=check, cwd=cwd)

    def node_pids(self, node: str) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.node_netns[node]], capture_output=True, text=True,
                             check=True).stdout
        return [int(p) for p in out.split()]

    def _slurmd_alive(self, node: str) -> bool:
        """Whether ``node``'s slurmd (from its pid file) runs, in the node's namespace."""
        try:
            with open(os.path.join(self.state_dir, "run", f"slurmd-{node}.pid"), encoding="utf-8") as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return False
        return pid in self.node_pids(node)

    def kill_node(self, node: str) -> int:
        """A node crash: SIGKILL to every process on ``node`` (its slurmd and the job's processes there).
        Returns how many were killed."""
        pids = self.node_pids(node)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def wait_messages_delivered(self, timeout: float = 120) -> None:
        """Wait until slurmctld has no message left to deliver (``sdiag``'s agent queue is empty). A step signal sent
        to a dead node is retried about a minute later; if the node is back by then and runs a new step with the
        same id (a requeued job's steps count from 0 again), the late signal would kill that new step."""
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            out = self.run(["sdiag"], check=False).stdout
            queued = re.search(r"Agent queue size:\s*(\d+)", out)
            if queued and queued.group(1) == "0":
                return
            time.sleep(1)
        pytest.fail(f"slurmctld still has messages to deliver after {timeout:.0f}s:\n{out}")

    def restart_node(self, node: str, timeout: float = 60) -> None:
        """Start ``node``'s slurmd again unless it runs, and wait until Slurm sees the node idle (ReturnToService=2
        brings a node back when its slurmd registers; a node still marked down is resumed)."""
        deadline = time.monotonic() + timeout
        if not self._slurmd_alive(node):
            subprocess.run([os.path.join(SCRIPTS, "two_nodes_host.sh"), self.state_dir, node, "/usr/sbin/slurmd",
                            "-N", node], check=True, capture_output=True, text=True, timeout=60)
        state = ""
        while time.monotonic() < deadline:
            state = self.run(["sinfo", "-h", "-n", node, "-o", "%t"], check=False).stdout.strip()
            if state in ("idle", "mix", "alloc"):
                return
            if state.startswith(("down", "drain")):
                self.run(["scontrol", "update", f"nodename={node}", "state=resume"], check=False)
            time.sleep(0.5)
        pytest.fail(f"node {node} not back after {timeout:.0f}s (state {state!r}); logs in {self.state_dir}/log")


@pytest.fixture(scope="session")
def two_nodes():
    """The two-node test cluster, started once per session and always stopped at the end."""
    state = tempfile.mkdtemp(prefix="la-slurm2-", dir="/tmp")  # short: the munge socket path must fit 108 bytes
    stop = [os.path.join(SCRIPTS, "stop_two_nodes.sh"), state]
    try:
        proc = subprocess.run(["bash", os.path.join(SCRIPTS, "start_two_nodes.sh"), state], capture_output=True,
                              text=True, timeout=600)
        if proc.returncode == CANNOT_INSTALL:
            reason = f"a two-node Slurm cannot run here: {proc.stderr.strip()}"
            if os.environ.get("LANGADAPT_REQUIRE_SLURM") == "1":
                pytest.fail(reason + " (LANGADAPT_REQUIRE_SLURM=1)")
            pytest.skip(reason)
        if proc.returncode != 0:
            pytest.fail(f"tests/slurm/start_two_nodes.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        settings = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
        yield TwoNodeCluster(state, settings)
    finally:
        if os.environ.get("LANGADAPT_KEEP_SLURM") != "1":
            subprocess.run(["bash", *stop], capture_output=True, text=True, timeout=120)
            shutil.rmtree(state, ignore_errors=True)

"""langadapt.cli: how a stage script ends (exit status, and the torch.distributed process group torn down)."""

import pytest
import torch.distributed as dist

from langadapt.cli import EXIT_USAGE, UsageError, end_distributed, run_main


@pytest.fixture
def one_rank_group(tmp_path):
    """A real gloo process group of one rank (a file store, no ports), destroyed after the test if still there."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_end_distributed_destroys_the_group(one_rank_group):
    assert dist.is_initialized()
    end_distributed(barrier=True)
    assert not dist.is_initialized()
    end_distributed()  # nothing to do: no error


@pytest.mark.parametrize("raise_usage", [False, True])
def test_run_main_destroys_the_group_only_when_main_returns(one_rank_group, raise_usage, capsys):
    """A failing rank leaves the group alone (destroying it while another rank is in a collective can hang)."""
    def main(argv):
        assert dist.is_initialized()
        if raise_usage:
            raise UsageError("--flag: bad value")

    if raise_usage:
        with pytest.raises(SystemExit) as exit_info:
            run_main(main, [])
        assert exit_info.value.code == EXIT_USAGE
        assert "error: --flag: bad value" in capsys.readouterr().err
        assert dist.is_initialized()
    else:
        run_main(main, [])
        assert not dist.is_initialized()

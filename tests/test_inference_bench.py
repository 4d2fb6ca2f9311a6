"""bench/inference.py runs end to end (smoke run; the numbers themselves are not asserted)."""

import json

import pytest

from _inference_helpers import load_script, one_thread  # noqa: F401 - fixture


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_bench_smoke(tiny_model_dir, tmp_path):
    bench = load_script("bench/inference.py")
    report = bench.main(["--model", tiny_model_dir, "--limit", "3", "--batch_size", "2", "--seed_max_new_tokens",
                         "64", "--output_dir", str(tmp_path)])
    assert json.load(open(tmp_path / "inference.json")) == json.loads(json.dumps(report))
    seed, same_cap, ours = report["results"]
    assert (seed["max_new_tokens"], same_cap["max_new_tokens"], ours["max_new_tokens"]) == (64, 64, 32)
    assert same_cap["identical"] == 3  # batching changes speed, not answers
    assert ours["different"] == 0

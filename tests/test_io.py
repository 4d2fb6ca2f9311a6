import os

import pytest

from langadapt.cli import UsageError
from langadapt.io import atomic_output_dir, iter_corpus, iter_documents, resolve_files, write_json, read_json


def test_resolve_files_dirs_and_errors(tmp_path):
    (tmp_path / "a.txt").write_text("سلام\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text('{"text": "x"}\n', encoding="utf-8")
    (tmp_path / "ignored.csv").write_text("x\n")
    assert resolve_files(str(tmp_path), "--train_file") == [str(tmp_path / "a.txt"), str(tmp_path / "sub" / "b.jsonl")]
    with pytest.raises(UsageError, match="--train_file: .*missing.txt does not exist"):
        resolve_files(str(tmp_path / "missing.txt"), "--train_file")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UsageError, match="empty.txt is empty"):
        resolve_files(str(tmp_path / "empty.txt"), "--train_file")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(UsageError, match="holds no .txt/.jsonl"):
        resolve_files(str(tmp_path / "nothing"), "--dataset_dir")


def test_non_utf8_names_file_and_line(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes("سلام\n".encode() + b"ok\n\xff\xfe broken\n")
    with pytest.raises(UsageError, match=r"bad.txt:3: not valid UTF-8 \(byte 0xff at column 1\)"):
        list(iter_documents(str(p)))


def test_jsonl_documents(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"text": "یک"}\n\n{"text": "دو"}\n', encoding="utf-8")
    assert list(iter_corpus([str(p)])) == ["یک", "دو"]
    p.write_text('{"text": "یک"}\n{"body": "دو"}\n', encoding="utf-8")
    with pytest.raises(UsageError, match="c.jsonl:2: expected an object with a string field 'text'"):
        list(iter_documents(str(p)))
    p.write_text('{"text": \n', encoding="utf-8")
    with pytest.raises(UsageError, match="c.jsonl:1: not valid JSON"):
        list(iter_documents(str(p)))


def test_atomic_output_dir(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(str(out)) as tmp:
        write_json(os.path.join(tmp, "r.json"), {"a": "ب"})
        assert not out.exists()
    assert read_json(str(out / "r.json")) == {"a": "ب"}
    assert os.stat(out / "r.json").st_mode & 0o777 == 0o644  # readable by the group, like any other output
    with pytest.raises(UsageError, match="exists and is not empty"):
        with atomic_output_dir(str(out)):
            pass
    with pytest.raises(RuntimeError):
        with atomic_output_dir(str(out), overwrite=True) as tmp:
            write_json(os.path.join(tmp, "r.json"), {"a": 2})
            raise RuntimeError("stage failed")
    assert read_json(str(out / "r.json")) == {"a": "ب"}  # old output untouched
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temp folder left behind
    with atomic_output_dir(str(out), overwrite=True) as tmp:
        write_json(os.path.join(tmp, "r.json"), {"a": 3})
    assert read_json(str(out / "r.json")) == {"a": 3}
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_write_jsonl_one_object_a_line_persian_readable(tmp_path):
    from langadapt.io import write_jsonl

    path = tmp_path / "sub" / "out.jsonl"
    write_jsonl(str(path), ({"text": t, "n": i} for i, t in enumerate(["سلام", "a\nb"])))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == ['{"text": "سلام", "n": 0}', '{"text": "a\\nb", "n": 1}']
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_iter_jsonl_lines_blank_lines_bom_and_errors(tmp_path):
    from langadapt.io import iter_jsonl

    path = tmp_path / "a.jsonl"
    path.write_text('\ufeff{"x": 1}\n\n  \n[2]\n', encoding="utf-8")
    assert list(iter_jsonl(str(path))) == [(1, {"x": 1}), (4, [2])]
    path.write_text('{"x": 1}\n{"x": \n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"a\.jsonl:2: not valid JSON \(.*\); repair it$"):
        list(iter_jsonl(str(path), "repair it"))
    with pytest.raises(UsageError, match=r"a\.jsonl:2: not valid JSON \([^)]*\)$"):
        list(iter_jsonl(str(path), hint=""))


@pytest.fixture
def umask_002():
    previous = os.umask(0o002)
    yield
    os.umask(previous)


def test_outputs_honour_the_umask(tmp_path, umask_002):
    """Finding 8: folders built under a temporary name were drwx------ and safetensors files -rw-------, whatever
    the umask; a colleague on the shared disk got "Permission denied"."""
    import stat

    import torch
    from safetensors.torch import save_file

    out = tmp_path / "out"
    with atomic_output_dir(str(out)) as tmp:
        os.makedirs(os.path.join(tmp, "sub"))
        save_file({"w": torch.zeros(2)}, os.path.join(tmp, "sub", "model.safetensors"))
        write_json(os.path.join(tmp, "r.json"), {"a": 1})
    found = {p: stat.S_IMODE(os.stat(out / p).st_mode) for p in (".", "sub", "sub/model.safetensors", "r.json")}
    assert found == {".": 0o775, "sub": 0o775, "sub/model.safetensors": 0o664, "r.json": 0o664}


def test_stale_temporary_folders_of_a_killed_run_are_removed(tmp_path):
    """A killed merge left a hidden temp folder (523 MB for the tiny model, 14 GB at 7B) that no later run removed.
    The next run of the same stage removes ours that are older than it and whose writer is gone."""
    import socket
    import subprocess
    import time

    from langadapt import io

    host = socket.gethostname().split(".")[0].replace("-", "_")
    proc = subprocess.Popen(["true"])
    proc.wait()
    dead_pid = proc.pid  # exited and reaped: no such process
    names = {
        "dead": f".out.tmp-{host}-{dead_pid}-abc",       # killed writer on this host: removed
        "live": f".out.tmp-{host}-{os.getpid()}-abc",    # a writer still running: kept
        "legacy": ".out.tmp-k3j4h5g6",                   # the older naming, no owner recorded: removed
        "other_stage": f".other.tmp-{host}-{dead_pid}-x",  # not this output's: kept
    }
    old = time.time() - 3600
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"x" * 10)
        os.utime(tmp_path / name, (old, old))
    with atomic_output_dir(str(tmp_path / "out")) as tmp:
        write_json(os.path.join(tmp, "r.json"), {"a": 1})
    assert sorted(os.listdir(tmp_path)) == sorted(["out", names["live"], names["other_stage"]])
    assert io.remove_stale_temps(str(tmp_path / "out")) == []


def test_json_never_holds_nan_or_infinity(tmp_path):
    """Finding 5: perplexity.py wrote NaN into JSON (not JSON: jq and JavaScript reject the file)."""
    import json
    import math

    import numpy as np

    path = tmp_path / "r.json"
    write_json(str(path), {"nll": float("nan"), "ppl": [1.5, float("inf"), -math.inf], "n": np.float32(2.0)})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"nll": None, "ppl": [1.5, None, None],
                                                                          "n": 2.0}


def test_output_path_under_a_file_or_read_only_is_refused(tmp_path):
    from langadapt.errors import InputError

    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="--output_dir: .*afile is a file"):
        with atomic_output_dir(str(tmp_path / "afile" / "out")):
            pass
    if os.getuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        with pytest.raises(InputError, match="not writable"):
            with atomic_output_dir(str(ro / "out")):
                pass


def test_cache_temps_of_killed_writers_on_this_host_are_removed(tmp_path):
    """A pretraining run killed while tokenizing left its `.work-*` folder in the shared cache. The next run removes
    those of dead processes on this host, and keeps those of live ones and of other hosts (other jobs may be writing
    other entries of the same cache)."""
    import socket
    import subprocess

    from langadapt.io import owned_temp_dir

    host = socket.gethostname().split(".")[0].replace("-", "_")
    proc = subprocess.Popen(["true"])
    proc.wait()
    dead, live, other = (f".work-{host}-{proc.pid}-a", f".work-{host}-{os.getpid()}-b", ".work-node7-1-c")
    for name in (dead, live, other):
        (tmp_path / name).mkdir()
    new = owned_temp_dir(str(tmp_path), "work")
    assert os.path.basename(new).startswith(f".work-{host}-{os.getpid()}-")
    assert sorted(os.listdir(tmp_path)) == sorted([live, other, os.path.basename(new)])

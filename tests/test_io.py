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

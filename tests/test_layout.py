"""The shipped package holds library code only: demo and test-fixture modules live in demo/ and tests/; the argument
dataclasses of every stage live in langadapt/args/."""

from __future__ import annotations

import ast
import glob
import os
import subprocess
import sys

from setuptools import find_packages

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTSIDE_MODULES = {"demo", "demo_data", "smollm", "corpora", "tiny"}  # demo/*.py and tests/tiny.py


def test_package_list_is_the_library_only():
    packages = find_packages(REPO, include=["langadapt*"])
    assert sorted(packages) == ["langadapt", "langadapt.args", "langadapt.parallel", "langadapt.report"]
    files = glob.glob(os.path.join(REPO, "langadapt", "**", "*.py"), recursive=True)
    shipped = {os.path.splitext(os.path.basename(p))[0] for p in files}
    assert not shipped & OUTSIDE_MODULES
    assert {os.path.basename(p) for p in glob.glob(os.path.join(REPO, "demo", "*.py"))} >= {
        "demo.py", "demo_data.py", "smollm.py", "corpora.py"}
    assert os.path.isfile(os.path.join(REPO, "tests", "tiny.py"))


def test_library_imports_no_demo_or_test_module():
    for path in glob.glob(os.path.join(REPO, "langadapt", "**", "*.py"), recursive=True):
        tree = ast.parse(open(path, encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            else:
                continue
            assert not set(names) & (OUTSIDE_MODULES | {"tests"}), (path, node.lineno, names)


# The library and the stage scripts; demo/ and bench/ configure their own runs and are not stages.
STAGE_CODE = ("langadapt", "tokenizer", "pretrain", "sft", "inference", "data")


def argument_dataclasses(path: str) -> list[str]:
    """Names of the ``@dataclass`` classes in a file whose name ends in ``Arguments``."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name.endswith("Arguments"):
            for d in node.decorator_list:
                target = d.func if isinstance(d, ast.Call) else d
                name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                if name == "dataclass":
                    found.append(node.name)
    return found


def test_argument_dataclasses_live_in_langadapt_args():
    args_dir = os.path.join(REPO, "langadapt", "args") + os.sep
    inside, outside = set(), []
    for folder in STAGE_CODE:
        for path in glob.glob(os.path.join(REPO, folder, "**", "*.py"), recursive=True):
            names = argument_dataclasses(path)
            if path.startswith(args_dir):
                inside.update(names)
            else:
                outside += [(os.path.relpath(path, REPO), n) for n in names]
    assert outside == []
    # Each stage's classes are there (the check above would pass on an empty tree).
    assert {"ModelArguments", "SFTDataArguments", "ParallelArguments", "ExtractArguments", "MergeArguments",
            "InferenceArguments", "PerplexityArguments", "ScoreArguments", "ReportArguments",
            "LMEvalArguments"} <= inside


def test_argument_dataclass_finder_sees_both_decorator_forms(tmp_path):
    src = tmp_path / "x.py"
    src.write_text("import dataclasses\nfrom dataclasses import dataclass\n@dataclass\nclass AArguments: pass\n"
                   "@dataclasses.dataclass(frozen=True)\nclass BArguments: pass\nclass CArguments: pass\n")
    assert argument_dataclasses(str(src)) == ["AArguments", "BArguments"]


def test_every_argument_module_imports_in_a_fresh_interpreter():
    names = sorted(os.path.splitext(os.path.basename(p))[0]
                   for p in glob.glob(os.path.join(REPO, "langadapt", "args", "*.py")))
    modules = ["langadapt.args" + ("" if n == "__init__" else "." + n) for n in names]
    assert len(modules) >= 5
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    env = {**os.environ, "PYTHONPATH": REPO}
    # One interpreter per module: each must come up whole when it is the first one imported (a cycle would not).
    procs = {m: subprocess.Popen([sys.executable, "-c", code, m], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=env) for m in modules}
    for m, proc in procs.items():
        _, err = proc.communicate()
        assert proc.returncode == 0, (m, err[-2000:])

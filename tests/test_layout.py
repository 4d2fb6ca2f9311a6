"""The shipped package holds library code only: demo and test-fixture modules live in demo/ and tests/."""

from __future__ import annotations

import ast
import glob
import os

from setuptools import find_packages

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTSIDE_MODULES = {"demo", "demo_data", "smollm", "corpora", "tiny"}  # demo/*.py and tests/tiny.py


def test_package_list_is_the_library_only():
    packages = find_packages(REPO, include=["langadapt*"])
    assert sorted(packages) == ["langadapt", "langadapt.parallel", "langadapt.report"]
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

"""Import a stage script (they are files, not a package) as a module, so tests call its ``main([...])``."""

import importlib.util
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(relpath: str):
    """The module of ``relpath`` (e.g. ``sft/run_clm_sft_with_peft.py``), registered in ``sys.modules`` because
    dataclasses look their module up while the class is built."""
    name = "script_" + relpath.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

"""pytest setup: the tests import the package from this working tree (not an installed copy)
and find the schedule files in ``data/`` (written by ``s3 baselines --emit``)."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = pathlib.Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(ROOT))

HINT = "run `bash scripts/install_python_test_deps.sh` and use the venv's python"


def require(module: str):
    """Imports ``module`` or fails (never skips) with the install command."""
    import importlib

    import pytest

    try:
        return importlib.import_module(module)
    except ImportError as e:
        pytest.fail(f"{module} is not importable ({e}); {HINT}", pytrace=False)

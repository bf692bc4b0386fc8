#!/usr/bin/env bash
# What the test suite needs besides the Rust toolchain, installed inside the repository
# (both folders are git-ignored) from PyPI:
#   .ort/     the ONNX Runtime shared library (tests/onnx.rs, tests/fid.rs)
#   .pydeps/  numpy, to check that s3's FID statistics load in numpy (tests/fid.rs) and to
#             run the s3schedule package against s3 (tests/python.rs)
# and, outside the checkout, the torch venv of python/tests (scripts/install_python_test_deps.sh).
# Idempotent; about 5 s once the torch venv exists, about 5 minutes on a fresh machine.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
bash "$ROOT/scripts/install_onnxruntime.sh"
PY="${PYTHON:-python3}"
if PYTHONPATH="$ROOT/.pydeps" "$PY" -c "import numpy" 2>/dev/null; then
    echo "numpy available to $PY"
else
    "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --target "$ROOT/.pydeps" "numpy>=1.24"
    echo "numpy installed into $ROOT/.pydeps"
fi
# torch, diffusers, pytest and k-diffusion for python/tests (tests/python_package.rs), in a
# venv outside the checkout (minutes and ~5.5 GB on a fresh machine; seconds once built).
bash "$ROOT/scripts/install_python_test_deps.sh"

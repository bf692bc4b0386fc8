#!/usr/bin/env bash
# What the test suite needs besides the Rust toolchain, installed inside the repository
# (both folders are git-ignored) from PyPI:
#   .ort/     the ONNX Runtime shared library (tests/onnx.rs, tests/fid.rs)
#   .pydeps/  numpy, to check that s3's FID statistics load in numpy (tests/fid.rs)
# Idempotent; about 5 s on a fresh machine.
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

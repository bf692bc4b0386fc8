#!/usr/bin/env bash
# What python/tests (pytest) needs, in a virtual environment outside the checkout, from PyPI
# only. Creates or reuses the venv; installs only what is missing; prints what it did.
#
#   venv:  $S3_TORCH_VENV, else ~/.cache/s3-torch-venv (the venv the repository's torch tools
#          use; reusing it avoids a second multi-GB torch install)
#   needs: numpy, pytest, torch, diffusers (pinned as tools/onnx_export/requirements.txt),
#          transformers (a tiny random Stable Diffusion pipeline's text encoder),
#          k-diffusion without its dependencies (the tests load only its model wrappers;
#          its package imports training-only libraries: wandb, clip, kornia, torchvision, …)
#
# On Linux, PyPI's torch wheel (539 MB) does not import without the nvidia-* CUDA packages
# (its libtorch_cuda.so links cuBLAS, cuDNN, NCCL, …), even on a CPU-only machine, and PyPI
# has no CPU-only build: a fresh venv is 5.5 GB and took 5 min 11 s here (torch 243 s,
# diffusers 49 s). A CPU-only torch already in the venv is kept as it is.
#
# Then: "$VENV/bin/python" -m pytest python/tests
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${S3_TORCH_VENV:-$HOME/.cache/s3-torch-venv}"
PY="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ]; then
    echo "reusing the venv $VENV"
else
    "$PY" -c 'import sys; assert sys.version_info >= (3, 9), sys.version' \
        || { echo "error: $PY is older than Python 3.9" >&2; exit 1; }
    "$PY" -m venv "$VENV"
    echo "created the venv $VENV with $("$VENV/bin/python" --version)"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install --quiet --disable-pip-version-check)

# module to import = requirement to install (with pip's own dependencies)
need() {
    local module="$1"; shift
    if "$VPY" -c "import $module" 2>/dev/null; then
        echo "  $module: present ($("$VPY" -c "import $module as m; print(getattr(m, '__version__', 'ok'))" 2>/dev/null))"
    else
        local start=$SECONDS
        "${PIP[@]}" "$@"
        echo "  $module: installed $* in $((SECONDS - start)) s"
    fi
}

need numpy "numpy>=1.24"
need pytest "pytest>=7"
need torch "torch==2.15.0"
need diffusers "diffusers==0.42.1"
# transformers: the tiny random StableDiffusionPipeline of python/tests/test_export_usage.py
need transformers "transformers==5.24.0"
# k-diffusion: the package itself only (its __init__ is never imported by the tests).
if "$VPY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('k_diffusion') is None)"; then
    echo "  k_diffusion: present"
else
    "${PIP[@]}" --no-deps "k-diffusion==0.1.1.post1"
    echo "  k_diffusion: installed k-diffusion==0.1.1.post1 (--no-deps)"
fi

echo "ready: cd $ROOT && $VPY -m pytest python/tests"

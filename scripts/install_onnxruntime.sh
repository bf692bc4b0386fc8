#!/usr/bin/env bash
# Installs the ONNX Runtime shared library that s3 loads at run time (ort, load-dynamic) into
# the project-local .ort/ folder, from the onnxruntime wheel on PyPI. Nothing else is needed:
# s3 finds .ort/ by itself (after ORT_DYLIB_PATH, before an installed Python onnxruntime).
#
#   bash scripts/install_onnxruntime.sh            # into ./.ort
#   bash scripts/install_onnxruntime.sh DIR        # into DIR
set -euo pipefail
VERSION=1.31.1
DEST="${1:-$(cd "$(dirname "$0")/.." && pwd)/.ort}"
if ls "$DEST"/onnxruntime/capi/libonnxruntime.so.* >/dev/null 2>&1; then
    echo "ONNX Runtime already in $DEST: $(ls "$DEST"/onnxruntime/capi/libonnxruntime.so.*)"
    exit 0
fi
PY="${PYTHON:-python3}"
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$DEST" "onnxruntime==$VERSION"
echo "ONNX Runtime $VERSION installed: $(ls "$DEST"/onnxruntime/capi/libonnxruntime.so.*)"

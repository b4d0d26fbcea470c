#!/usr/bin/env bash
# Installs everything cliplab needs on a fresh Debian machine: the Fashion-MNIST package and the
# Python package with its pinned CPU torch. Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        echo "note: Fashion-MNIST not installed; run 'sudo apt-get install dataset-fashion-mnist'" \
             "or pass --train-data DIR (see README)" >&2
    fi
fi

PYTHON=${PYTHON:-python3}
# torch first and pinned, so nothing resolves a newer (CUDA) build.
"$PYTHON" -m pip install -q "torch==2.13.0"
"$PYTHON" -m pip install -q -e ".[test,parquet,wandb,hf,peft]"
# Test oracles only (open_clip's and timm's model code, CLIP_benchmark's metrics): installed --no-deps
# into build/test-oracles, a folder that only the test suite puts on sys.path (tests/conftest.py), so
# they never shadow anything in the user's environment. Their torchvision does not import against the
# CPU torch; the tests import them behind a stand-in (tests/reference_libraries.py).
ORACLES=build/test-oracles
ORACLE_PINS="open_clip_torch==3.3.0 timm==1.0.31 clip-benchmark==1.6.2"
if [ "$(cat "$ORACLES/.pins" 2>/dev/null)" != "$ORACLE_PINS" ]; then
    rm -rf "$ORACLES"
    # shellcheck disable=SC2086
    "$PYTHON" -m pip install -q --no-deps --target "$ORACLES" $ORACLE_PINS
    echo "$ORACLE_PINS" > "$ORACLES/.pins"
fi

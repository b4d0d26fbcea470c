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
"$PYTHON" -m pip install -q -e ".[test,parquet,wandb]"
# A test oracle only: open_clip's model code and tokenizer, without its torchvision/timm dependencies.
"$PYTHON" -m pip install -q --no-deps "open_clip_torch==3.3.0"

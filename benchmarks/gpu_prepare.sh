#!/usr/bin/env bash
# Fill .gpu/ (git-ignored) with what benchmarks/gpu_check.py needs on a GPU machine that has
# no network and no minimeta: the two Omniglot archives (5.6 MB) and a threadpoolctl wheel (a
# core dependency the machine's Python lacks; pure Python, imported straight from the wheel).
# Then carry ".gpu" with the checkout and run there, from the repository root:
#   export PYTHONPATH=$PWD:$(ls $PWD/.gpu/wheels/*.whl | paste -sd:)
#   export MINIMETA_DATA_DIR=$PWD/.gpu/omniglot
#   python3 benchmarks/gpu_check.py --out "$OUT/gpu" --budget 480 2>&1 | tee "$OUT/gpu.log"
set -euo pipefail
cd "$(dirname "$0")/.."
data="${MINIMETA_DATA_DIR:-../shared/data/omniglot}"
mkdir -p .gpu/omniglot .gpu/wheels
cp "$data"/images_background.npz "$data"/images_evaluation.npz .gpu/omniglot/
pip download -q --no-deps --only-binary=:all: -d .gpu/wheels threadpoolctl
ls -l .gpu/omniglot .gpu/wheels

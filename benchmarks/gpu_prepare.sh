#!/usr/bin/env bash
# Fill .gpu/ (git-ignored) with what benchmarks/gpu_check.py needs on a GPU machine that has
# no network and no minimeta: the two Omniglot archives (5.6 MB), a threadpoolctl wheel (a
# core dependency the machine's Python lacks; pure Python, imported straight from the wheel),
# and NVVM, the CUDA 13 compiler library numba-cuda compiles kernels with, in case that machine
# lacks one that works (numba-cuda brings it only with its [cu13] extra): libnvvm.so.4,
# xz-compressed (23 MB; gpu_check.py unpacks it to a CUDA_HOME only if neither numba-cuda's own
# NVVM nor the machine's toolkit runs a kernel: benchmarks/_nvvm.py), and libdevice. NVVM 13.0
# exactly: the machine's driver is CUDA 13.0 (580.159), which loads PTX up to ISA 9.0; NVVM
# 13.5 writes 9.5, which it refuses. About 30 MB in all, under the 64 MiB a carry allows.
# With commits as arguments (bash benchmarks/gpu_prepare.sh e0533c1 ...), each one's minimeta/
# and kernels/ go to .gpu/trees/<commit> too (about 1 MB each), for a before / after on the same
# GPU: gpu_check.py's ab phase runs gpu_profile.py --trees .gpu/trees/<commit>... . on them.
# Then carry ".gpu" with the checkout and run there, from the repository root:
#   export PYTHONPATH=$PWD:$(ls $PWD/.gpu/wheels/*.whl | paste -sd:)
#   export MINIMETA_DATA_DIR=$PWD/.gpu/omniglot
#   python3 benchmarks/gpu_check.py --out "$OUT/gpu" --budget 480 2>&1 | tee "$OUT/gpu.log"
set -euo pipefail
cd "$(dirname "$0")/.."
data="${MINIMETA_DATA_DIR:-../shared/data/omniglot}"
mkdir -p .gpu/omniglot .gpu/wheels .gpu/cuda/nvvm/lib64 .gpu/cuda/nvvm/libdevice
cp "$data"/images_background.npz "$data"/images_evaluation.npz .gpu/omniglot/
pip download -q --no-deps --only-binary=:all: -d .gpu/wheels threadpoolctl
nvvm="nvidia-nvvm==13.0.*"     # written beside it: a copy of another version is fetched anew
if [ ! -f .gpu/cuda/nvvm/lib64/libnvvm.so.4.xz ] \
        || [ "$(cat .gpu/cuda/nvvm/VERSION 2>/dev/null)" != "$nvvm" ]; then
    tmp="$(mktemp -d)"
    pip download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
        -d "$tmp" "$nvvm"
    python3 -m zipfile -e "$tmp"/nvidia_nvvm-*.whl "$tmp/x"
    xz -6 -T0 -c "$tmp/x/nvidia/cu13/lib/libnvvm.so.4" > .gpu/cuda/nvvm/lib64/libnvvm.so.4.xz
    cp "$tmp/x/nvidia/cu13/nvvm/libdevice/libdevice.10.bc" .gpu/cuda/nvvm/libdevice/
    echo "$nvvm" > .gpu/cuda/nvvm/VERSION
    rm -rf "$tmp"
fi
for rev in "$@"; do
    rm -rf ".gpu/trees/$rev" && mkdir -p ".gpu/trees/$rev"
    git archive "$rev" minimeta kernels | tar -x -C ".gpu/trees/$rev"
done
ls -l .gpu/omniglot .gpu/wheels .gpu/cuda/nvvm/lib64 .gpu/cuda/nvvm/libdevice
du -sh .gpu

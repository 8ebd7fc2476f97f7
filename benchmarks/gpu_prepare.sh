#!/usr/bin/env bash
# Here, before a GPU run: fill .whl/ with wheels (for the GPU machine's Python 3.12 on x86-64
# Linux) of every dependency that machine may lack, pinned to the versions installed here, and
# .gpu_data/mnist with MNIST (gpu_train.py's LeNet cases; CIFAR-10 is too large to carry).
# Both are ignored by git (.git/info/exclude) and travel with the run as `carry`:
#
#     bash benchmarks/gpu_prepare.sh
#     run(command="bash benchmarks/gpu_check.sh $OUT", carry=[".whl", ".gpu_data"], timeout_s=600)
#
# GPU_PYTHON_VERSION (default 3.12) names the device's Python; PYTHON this machine's.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
PYVER=${GPU_PYTHON_VERSION:-3.12}
DATA=${TRAINNET_DATA:-$ROOT/../shared/data}

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
for path in /.whl/ /.gpu_data/; do
    grep -qxF "$path" "$exclude" 2>/dev/null || echo "$path" >>"$exclude"
done

rm -rf .whl
mkdir -p .whl
mapfile -t wanted < <("$PY" benchmarks/gpu_wheels.py requirements)
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
"$PY" -m pip download -q --only-binary=:all: --python-version "$PYVER" --implementation cp \
    "${platforms[@]}" -d .whl "${wanted[@]}" 2> >(grep -v "is ignored: it is neither" >&2)
"$PY" benchmarks/gpu_wheels.py prune .whl
"$PY" benchmarks/gpu_wheels.py wheels .whl

rm -rf .gpu_data
mkdir -p .gpu_data/mnist
cp "$DATA"/mnist/*-ubyte.gz .gpu_data/mnist/
du -sh .whl .gpu_data

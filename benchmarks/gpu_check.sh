#!/usr/bin/env bash
# benchmarks/gpu_check.sh OUTDIR: a first run on a bare GPU machine, all within ten minutes.
#
# 1. env:     the GPU, Python, CuPy, PyTorch (env.log)
# 2. install: the project and its missing dependencies from the wheels in .whl/ (made here by
#             benchmarks/gpu_prepare.sh), nothing fetched (install.log)
# 3. tests:   `pytest -m gpu` on the real GPU (the emulated cases run in CI), failures first,
#             each test phase bounded by GPU_CHECK_TEST_SECONDS (benchmarks/gpu_check_alarm.py)
#             (tests.log, tests.xml)
# 4. gpu_train.py and zoo_nets.py --device cuda with short settings (gpu_train.log, zoo_nets.log)
# Each step is bounded and logged under OUTDIR, one line each in OUTDIR/summary.txt; the whole
# is bounded by GPU_CHECK_BUDGET seconds (default 570: ten minutes less the copies).  OUTDIR
# holds 7 files (the device tool brings back 8 at most).  Exit status 0 when every step passed.
#
#   GPU_CHECK_DEVICE=emulated  run the same steps on tests/emulation's CPU backend (the emulated
#                              test cases, zoo_nets --device emulated; gpu_train.py is skipped):
#                              the script's own test, tests/test_gpu_check.py
#   GPU_CHECK_DRY_RUN=1        write each step's command to its log instead of running it
#   GPU_CHECK_WHEELS, GPU_CHECK_TESTS, GPU_CHECK_MAXFAIL, GPU_CHECK_TEST_SECONDS,
#   GPU_CHECK_TRAIN_ARGS, GPU_CHECK_ZOO_ARGS, PYTHON   override the defaults below
set -u
if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUDGET=${GPU_CHECK_BUDGET:-570}

if [ -z "${GPU_CHECK_INNER:-}" ]; then  # the whole run, under one bound
    : >"$OUT/summary.txt"
    GPU_CHECK_INNER=1 timeout -k 10 "$BUDGET" bash "$0" "$OUT"
    rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "all: stopped at the bound of $BUDGET s (GPU_CHECK_BUDGET)" >>"$OUT/summary.txt"
    fi
    cat "$OUT/summary.txt"
    exit $rc
fi

cd "$ROOT" || exit 2
PY=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
WHEELS=${GPU_CHECK_WHEELS:-$ROOT/.whl}
DEADLINE=$(($(date +%s) + BUDGET - 10))
SUMMARY=$OUT/summary.txt
FAILED=0
export PYTHONUNBUFFERED=1
export TRAINNET_DATA=${TRAINNET_DATA:-$ROOT/.gpu_data}
export PYTHONPATH=$ROOT:$ROOT/benchmarks${PYTHONPATH:+:$PYTHONPATH}  # the project, the alarm plugin

# step NAME LOG CAP COMMAND...: run COMMAND, output appended to OUT/LOG, bounded by CAP seconds
# and by the time left; one line in the summary.
step() {
    local name=$1 file=$2 log=$OUT/$2 cap=$3 rc status t0 left bound
    shift 3
    t0=$(date +%s)
    left=$((DEADLINE - t0))
    bound=$((cap < left ? cap : left))
    if [ "$bound" -lt 5 ]; then
        echo "$name: skipped (no time left)" >>"$SUMMARY"
        FAILED=1
        return 1
    fi
    echo "+ $*" >>"$log"
    if [ -n "${GPU_CHECK_DRY_RUN:-}" ]; then
        rc=0
    else
        timeout -k 5 "$bound" "$@" >>"$log" 2>&1
        rc=$?
    fi
    case $rc in
        0) status=ok ;;
        124 | 137) status="timed out" ;;
        *) status=failed ;;
    esac
    echo "$name: $status (exit $rc, $(($(date +%s) - t0)) s of $bound s) -> $file" >>"$SUMMARY"
    [ $rc -eq 0 ] || FAILED=1
    return $rc
}

# 1. the machine
step env env.log 30 bash -c "date -u; uname -m; nvidia-smi || echo 'no nvidia-smi'; $PY -V; \
    $PY -c 'import cupy; print(\"cupy\", cupy.__version__, cupy.cuda.runtime.getDeviceCount(), \"device(s)\")' \
    || echo 'no CuPy GPU'; $PY -c 'import torch; print(\"torch\", torch.__version__, torch.cuda.is_available())' \
    || echo 'no torch'; true"

# 2. the project, from the wheels brought along (nothing can be fetched there)
if [ -d "$WHEELS" ]; then
    if ! step install install.log 120 "$PY" -m pip install -q --no-index --find-links "$WHEELS" \
            --no-build-isolation --no-cache-dir -e "$ROOT[dev]"; then
        # no editable install (an old setuptools): the wheels alone, the project on PYTHONPATH
        SITE=${TMPDIR:-/tmp}/gpu_check_site
        step install_target install.log 90 bash -c "$PY -m pip install -q --no-index --no-deps \
            --no-compile --no-cache-dir --upgrade --target $SITE $WHEELS/*.whl" \
            && export PYTHONPATH=$PYTHONPATH:$SITE
    fi
else
    echo "install: skipped (no wheels folder $WHEELS: the packages present are used)" >>"$SUMMARY"
fi
step import env.log 60 "$PY" -c "import trainnet, pydantic, safetensors; \
from trainnet.runtime.device import gpu_count; print('trainnet imports; CUDA GPUs:', gpu_count())"

# 3. the GPU tests: the real device's cases (or, emulated, the emulator's), failures first
if [ "$DEVICE" = emulated ]; then select=emulated; else select="not emulated"; fi
# shellcheck disable=SC2086  # GPU_CHECK_TESTS is a list of paths
step tests tests.log 270 env GPU_CHECK_TEST_SECONDS="${GPU_CHECK_TEST_SECONDS:-60}" \
    "$PY" -m pytest -m gpu -k "$select" --ff --maxfail="${GPU_CHECK_MAXFAIL:-30}" \
    -p gpu_check_alarm -q -rfE --durations=15 --junitxml="$OUT/tests.xml" ${GPU_CHECK_TESTS:-tests}

# 4. the benchmarks, short
if [ "$DEVICE" = emulated ]; then
    echo "gpu_train: skipped (needs a CUDA GPU)" >>"$SUMMARY"
    zoo_default="--nets lenet --train-nets lenet --batch 2 --repeats 1 --round-time 0 --warmup 0 --no-batch1 --no-memory"
else
    cases=lenet64,lenet1024
    [ -f "$TRAINNET_DATA/cifar10/data_batch_1.bin" ] && cases=$cases,cifar_quick256
    # shellcheck disable=SC2086
    step gpu_train gpu_train.log 100 "$PY" benchmarks/gpu_train.py --data "$TRAINNET_DATA" \
        --cases "$cases" ${GPU_CHECK_TRAIN_ARGS:---iterations 50 --warmup 10 --rounds 3 --no-compile}
    zoo_default="--nets lenet,cifar10_quick,squeezenet_v1_1,resnet50 --train-nets lenet,resnet50 --repeats 3 --round-time 0.2 --warmup 2"
fi
if [ $((DEADLINE - $(date +%s))) -ge 5 ] && [ -z "${GPU_CHECK_DRY_RUN:-}" ] \
        && ! "$PY" -c "import torch" >/dev/null 2>&1; then
    # the benchmarks measure against PyTorch in the same run: without it there is no figure
    echo "zoo_nets: skipped (no torch: the benchmark compares with PyTorch)" >>"$SUMMARY"
else
    # shellcheck disable=SC2086
    step zoo_nets zoo_nets.log 120 "$PY" benchmarks/zoo_nets.py --device "$DEVICE" ${GPU_CHECK_ZOO_ARGS:-$zoo_default}
fi

exit $FAILED

#!/usr/bin/env bash
# One GPU check of gpuvalid (issue 14), ≤ 8 minutes on one H100, run from the repository root:
#
#   bash bench/device_check.sh --prepare     # here, with network: wheels for the GPU node, the test maps
#   bash bench/device_check.sh               # on the GPU node (or the `device` tool: carry .whl and .devdata)
#   bash bench/device_check.sh --rehearse    # anywhere: the same steps on the CPU, small sizes (a dry run)
#   bash bench/device_check.sh --standin     # anywhere: the same steps on cuda:0 = the CuPy stand-in of
#                                            # tests/standin (GPU code paths on the CPU, small sizes)
#
# Steps, in the order they run (each with its own time limit; a failing step does not stop the others); what
# issue 14 still has to show on a device comes first (5b, 5e, 5a, 5d), the steps measured on the H200 of
# 2026-11-27 last (bench/RESULTS.md):
#   1 environment (nvidia-smi, versions, gpuvalid info) and bench/fft_sizes.py (the edges 446 and 669, each with
#     a prime factor 223, that 0.e's working grid had before it chose 448 and 672: one 3-D FFT each)
#   2 start-up: one `gpuvalid run` of EMD-5168 (100³, no figures) on the GPU with an empty CuPy kernel cache,
#     again with the cache filled, and on the CPU (issue: the GPU run must not be slower than the CPU run);
#     every later step uses the kernel cache these runs filled ($CUPY_CACHE_DIR)
#   5b right after 2: bench/bench_e2e.py on EMD-5168 in 512³ and 768³ noise boxes on the GPU alone (the 768³
#     memory budget; a section that is not measured is listed with its reason, an internal error's traceback
#     goes to the log)
#   5e right after 5b: bench/big_arrays.py: CuPy's boolean-mask scatter and gather, flatnonzero, cumsum and
#     nanmedian on 2³¹ + 2²⁰ elements, against the answers known from the mask, and gpuvalid's slab forms; then
#     0.e's other steps (trilinear sampling, reflection padding, a Gaussian pass, tile occupancy) on a 1296³ cube
#   5a bench/bench_e2e.py: EMD-5168 in 128³–384³ noise boxes on GPU and CPU (CPU up to 256³); the table in the
#     log, the rows (with every section's values) in e2e_small.json
#   5d right after 5a: the CPU alone on the 384³ map (all eight sections; e2e_cpu384.json): the same-machine
#     CPU seconds of the issue's 384³ ratio (5a runs the CPU only up to 256³, so that its GPU rows are kept
#     whatever happens to this longer CPU run), then `bench_e2e.py --compare`: the 384³ GPU numbers of 5a
#     against these CPU numbers, section by section, within the GPU tests' tolerances
#   3 pytest -m gpu (every GPU-vs-CPU test), each failure printed as it happens (GPUVALID_PRINT_FAILURES), the
#     25 slowest tests at the end
#   4 gpuvalid selftest --device cuda:0 (Level 0 and Level 1)
#   7 bench/bench_archive.py --device cuda:0 (8 entries)
#   5c bench/profile_run.py: the 384³ map once more, every section under cProfile with
#     CUDA_LAUNCH_BLOCKING=1 (kernel time charged to the function that launched it) and once unblocked;
#     profile_384.txt under $OUT: where the time goes inside each section, without another device run
#   6 bench/bench_spiral.py --device cuda:0 (no reference algorithm)
#   8 bench/bench_level1_local.py --global: Level 1 on simulated half maps (1oel; the global sections first,
#     as run_level1 runs them, then the local resolution 1.c–1.f; seconds and device peaks), the GPU at
#     128³ (warm-up), 256³, the CPU at 128³ (same-machine ratio), then the GPU at 384³; at 128³ and 256³ 1.c
#     is also timed with each device engine (raw kernels, batched cuFFT); last, with its own limit (it only
#     gets what the steps before it left); l1local.{md,json} beside the log
#   --level1-local: steps 1 and 8 alone, with the Level 1 `-m gpu` tests between them (`-k level1`, 150 s at
#     most): Level 1 on its own device run (450 s), when the full check leaves it no time
# Everything is logged to $OUT/device_check.log ($OUT when set, else bench/out/), with the e2e rows as
# e2e_{small,big,cpu384}.json (their tables are in the log), l1local.{md,json} and the profile profile_<N>.txt
# beside it: seven files, of the eight the device tool brings back; reports of the start-up runs go to /tmp. The steps
# share a budget of 470 s ($DEVICE_CHECK_SECONDS): a step gets at most what is left; step 8 comes last and
# gets what the others left.
# The device machine's image has CuPy, torch, SciPy, typer, rich but no mrcfile: --prepare downloads its wheel
# into .whl/ (ignored) and this script installs it offline; the maps come from $GPUVALID_DATA, else .devdata/
# (filled by --prepare from ../shared/data), else ../shared/data.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FN=""
if [ "${1:-}" = --fn ]; then FN=1; MODE=$2; shift 2; else MODE=${1:-run}; fi  # --fn: see step()

if [ "$MODE" = "--prepare" ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        -d .whl mrcfile==1.5.4 || exit 1
    SRC=${GPUVALID_DATA:-$ROOT/../shared/data}
    mkdir -p .devdata
    mkdir -p .devdata/models
    for m in 1oel 1akea 1a5t; do   # step 8 (1oel) and the -m gpu tests (1akea, 1a5t, 1oel)
        [ -f "$SRC/models/$m.pdb" ] && cp -p "$SRC/models/$m.pdb" .devdata/models/
    done
    for f in MANIFEST.tsv emd_5168.map emd_5170.map emd_2566_crop_3j6b_chain9.mrc emd_3488.mrc emd_1997.map \
             emd_6824.mrc emd_3197.map emd_3001.map emd_0093_masked.mrc.gz emd_1997_header_v1.9.xml SHA256SUMS; do
        [ -f "$SRC/$f" ] && cp -p "$SRC/$f" .devdata/
    done
    grep -qx '/.devdata/' .git/info/exclude 2>/dev/null || echo '/.devdata/' >> .git/info/exclude
    du -sh .whl .devdata
    echo "prepared: run with carry [.whl, .devdata]"
    exit 0
fi

DEV=cuda:0
SIZES_SMALL="128 256 384"
SIZES_BIG="512 768"
CPU_MAX=256
CPU_BASELINE_SIZE=384   # step 5d (empty: skipped; in a rehearsal or on the stand-in 128, the size 5a runs there)
SPIRAL_SIZES="128 256 384"
PROFILE_SIZE=384   # step 5c
FFT_SIZES="446 448 669 672"   # step 1: EMD-5168 in 256³ and 384³ at 1 Å: N·Ts rounded (2·223, 3·223) and the edges 0.e uses
PROFILE_LIMIT=60
ENTRIES=8
L1_JOBS="$DEV:128,$DEV:256,cpu:128,$DEV:384"   # step 8, in this order (a time limit keeps what was measured)
L1_COMPARE="128,256"                            # step 8: boxes where 1.c's two device engines are also timed
L1_LIMIT=150
BIG_ELEMENTS=$(( 2**31 + 2**20 ))   # step 5e: bench/big_arrays.py (about 30 GB of device memory at its peak)
ONLY_L1=""
if [ "$MODE" = "--level1-local" ]; then
    ONLY_L1=1; L1_LIMIT=290; DEVICE_CHECK_SECONDS=${DEVICE_CHECK_SECONDS:-450}
fi
PYTEST_LIMIT=180   # the -m gpu tests on a GPU node (42 tests; end-to-end runs and memory estimates included)
if [ "$MODE" = "--standin" ]; then   # every Python process loads tests/standin/site/sitecustomize.py
    export GPUVALID_CUPY_STANDIN=1 PYTHONPATH=$ROOT/tests/standin/site${PYTHONPATH:+:$PYTHONPATH}
    SIZES_SMALL="128"; SIZES_BIG=""; CPU_MAX=128; SPIRAL_SIZES="64"; ENTRIES=2; PROFILE_SIZE=64; PROFILE_LIMIT=150
    FFT_SIZES="111 112"; CPU_BASELINE_SIZE="128"; BIG_ELEMENTS=3000001
    L1_JOBS="$DEV:48,cpu:48"; L1_COMPARE=48; L1_LIMIT=240; PYTEST_LIMIT=600; DEVICE_CHECK_SECONDS=${DEVICE_CHECK_SECONDS:-1500}
fi
if [ "$MODE" = "--rehearse" ]; then
    DEV=cpu; SIZES_SMALL="128"; SIZES_BIG=""; CPU_MAX=128; SPIRAL_SIZES="64"; ENTRIES=2; PROFILE_SIZE=64; PROFILE_LIMIT=120
    FFT_SIZES="111 112"; CPU_BASELINE_SIZE="128"; BIG_ELEMENTS=3000001
    L1_JOBS="cpu:48,cpu:64"; L1_LIMIT=240
fi
ARCHIVE_LIMIT=60; [ "$DEV" = cpu ] && ARCHIVE_LIMIT=240
TOTAL_S=${DEVICE_CHECK_SECONDS:-470}  # the whole script, every step's limit included (8 min on one H100)
[ "$DEV" = cpu ] && TOTAL_S=${DEVICE_CHECK_SECONDS:-900}

OUTDIR=${OUT:-$ROOT/bench/out}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/device_check.log
export PYTHONUNBUFFERED=1 COLUMNS=${COLUMNS:-160}

PY=python3
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 && ! $PY -c "import mrcfile" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gv_site .whl/*.whl \
        && export PYTHONPATH=/tmp/gv_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
if [ -z "${GPUVALID_DATA:-}" ]; then
    if [ -f .devdata/MANIFEST.tsv ]; then export GPUVALID_DATA=$ROOT/.devdata; else export GPUVALID_DATA=$ROOT/../shared/data; fi
fi
GV="$PY -m gpuvalid.cli"
# one CuPy kernel cache for every step: step 2 empties it for its cold run, and the steps after it reuse what
# the runs before them compiled (as a node's persistent cache does; in 2026-11-27's check each step compiled
# into the default cache again)
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-/tmp/gv_cupy_cache}
MAP=$GPUVALID_DATA/emd_5168.map
FAILED=()
T_START=$(date +%s)

secs() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

step() {  # step NAME LIMIT_S COMMAND... (COMMAND may be one of this script's functions)
    local name=$1 limit=$2; shift 2
    local left=$(( TOTAL_S - ($(date +%s) - T_START) ))
    if [ "$left" -lt 15 ]; then
        echo; echo "=== $name: skipped, the ${TOTAL_S} s budget is spent"; FAILED+=("$name (no time left)"); return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo; echo "=== $name (limit ${limit} s, at +$(( $(date +%s) - T_START )) s) ==="
    local t0=$EPOCHREALTIME
    if [ "$(type -t "$1")" = function ]; then
        timeout -k 5 "$limit" bash "$0" --fn "$MODE" "$@"
    else
        timeout -k 5 "$limit" "$@"
    fi
    local rc=$?
    echo "=== $name: rc=$rc, $(secs "$t0") s"
    [ $rc -ne 0 ] && FAILED+=("$name (rc $rc)")
    return 0
}

run_once() {  # run_once DEVICE OUT_NAME: wall seconds of one `gpuvalid run` in a fresh process
    local t0=$EPOCHREALTIME
    $GV run "$MAP" --threshold 10 --resolution 6.6 --device "$1" --no-figures --out "/tmp/gv_device_check/$2" >/dev/null
    local rc=$?
    echo "gpuvalid run emd_5168 --device $1 ($2): $(secs "$t0") s wall, rc=$rc"
    return $rc
}

startup() {
    mkdir -p /tmp/gv_device_check
    rm -rf "$CUPY_CACHE_DIR"                          # the cold run compiles every kernel it needs
    run_once "$DEV" run_cold_cache
    run_once "$DEV" run_warm_cache
    run_once cpu run_cpu
    $PY -X importtime -c "import gpuvalid.cli" 2> /tmp/gv_device_check/importtime_cli.txt
    tail -1 /tmp/gv_device_check/importtime_cli.txt
}

env_info() {
    nvidia-smi || true
    $PY -c "import sys, numpy, scipy; print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'scipy', scipy.__version__)"
    $PY -c "import cupy; print('cupy', cupy.__version__, 'CUDA runtime', cupy.cuda.runtime.runtimeGetVersion())" || true
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || true
    $GV info --device "$DEV"
    $PY bench/fft_sizes.py --device "$DEV" --sizes $FFT_SIZES --repeat 3 || true   # what 0.e's small-factor grid edges save on cuFFT
}

level1_local() {  # step 8 (also the whole of --level1-local)
    step "8 Level 1 local 1.c-1.f ($L1_JOBS)" $L1_LIMIT $PY bench/bench_level1_local.py --jobs "$L1_JOBS" \
        --direct-boxes 0 --compare-engines "$L1_COMPARE" --global --md "$OUTDIR/l1local.md" \
        --json "$OUTDIR/l1local.json"
}

if [ -n "$FN" ]; then  # bash device_check.sh --fn MODE FUNCTION: one step's function under `timeout`
    "$@"
    exit $?
fi

: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
step "1 environment" 60 env_info
if [ -n "$ONLY_L1" ]; then
    if [ "$DEV" != cpu ]; then   # issue 12's GPU-vs-CPU tests (17: file names with level1, and Level 1 end to end)
        step "3L pytest -m gpu -k level1" 150 env GPUVALID_PRINT_FAILURES=1 $PY -m pytest -m gpu -k level1 -q \
            -p no:cacheprovider --durations=10 tests
    fi
    level1_local
    echo; echo "=== done in $(( $(date +%s) - T_START )) s; log: $LOG"
    [ ${#FAILED[@]} -gt 0 ] && { printf 'FAILED: %s\n' "${FAILED[@]}"; exit 1; }
    exit 0
fi
step "2 start-up (cold/warm kernel cache, CPU)" 120 startup
if [ -n "$SIZES_BIG" ]; then
    step "5b bench_e2e ${SIZES_BIG} (GPU only)" 120 $PY bench/bench_e2e.py --device "$DEV" --sizes $SIZES_BIG --cpu-max 0 \
        --json "$OUTDIR/e2e_big.json"
fi
step "5e CuPy past 2³¹ elements ($BIG_ELEMENTS)" 60 $PY bench/big_arrays.py --device "$DEV" --elements $BIG_ELEMENTS
step "5a bench_e2e ${SIZES_SMALL}" 130 $PY bench/bench_e2e.py --device "$DEV" --sizes $SIZES_SMALL --cpu-max $CPU_MAX \
    --json "$OUTDIR/e2e_small.json"
if [ -n "$CPU_BASELINE_SIZE" ]; then
    step "5d CPU baseline ${CPU_BASELINE_SIZE}³" 100 $PY bench/bench_e2e.py --device cpu --sizes $CPU_BASELINE_SIZE \
        --json "$OUTDIR/e2e_cpu${CPU_BASELINE_SIZE}.json"
    step "5d GPU vs CPU at ${CPU_BASELINE_SIZE}³" 20 $PY bench/bench_e2e.py --compare "$OUTDIR/e2e_small.json" \
        "$OUTDIR/e2e_cpu${CPU_BASELINE_SIZE}.json"
fi
if [ "$DEV" != cpu ]; then
    step "3 pytest -m gpu" $PYTEST_LIMIT env GPUVALID_PRINT_FAILURES=1 $PY -m pytest -m gpu -q -p no:cacheprovider \
        --durations=25 tests
else
    echo; echo "=== 3 pytest -m gpu: skipped in a rehearsal (no GPU) ==="
fi
step "4 selftest" 90 $GV selftest --device "$DEV"
step "7 bench_archive" $ARCHIVE_LIMIT $PY bench/bench_archive.py --device "$DEV" --entries $ENTRIES --data "$GPUVALID_DATA" \
    --out /tmp/gv_archive_bench
step "5c profile ${PROFILE_SIZE}³" $PROFILE_LIMIT $PY bench/profile_run.py --device "$DEV" --size $PROFILE_SIZE \
    --out "$OUTDIR"
step "6 bench_spiral" 60 $PY bench/bench_spiral.py --device "$DEV" --sizes $SPIRAL_SIZES --no-reference --repeat 1 --no-real
level1_local

echo
echo "=== done in $(( $(date +%s) - T_START )) s; log: $LOG"
if [ ${#FAILED[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${FAILED[@]}"
    exit 1
fi
echo "all steps passed"

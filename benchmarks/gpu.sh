#!/usr/bin/env bash
# The GPU checks in one run: device info, the test suite, sparse throughput at
# 10M and 100M ratings (rank 128), the MovieLens 100k u1 fit time, that fit
# over several GPUs and processes against one device, and the ranking fit and
# recommend --all at 1M synthetic pairs (rank 32, 8 passes; no implicit there).
#
# Run from the repository root: bash benchmarks/gpu.sh
# It installs nothing: mfjax is imported from the checkout (PYTHONPATH), and
# jax[cuda], optax, chex, numpy, tqdm, pytest and hypothesis must be there
# already. Everything it writes goes under $OUT (default ./gpu-out), seven files
# at most.
#
# Knobs (environment):
#   OUT            output folder (default ./gpu-out)
#   MFJAX_DATA     the ml-100k folder (default ../shared/data/ml-100k; on the
#                  device machine carry a git-ignored copy, e.g. .gpu-data/ml-100k)
#   SIZES, RANKS   throughput cases (default 10000000,100000000 and 128)
#   STEPS, REPEATS throughput epochs per run and warm runs (default 5 and 3)
#   TESTS          what pytest runs (default: the whole suite); "skip" skips it
#   TEST_TIMEOUT   seconds for pytest (default 240)
#   BENCH_TIMEOUT  seconds for the throughput benchmark (default 200)
#   FIT_TIMEOUT    seconds for the fit (default 60)
#   MP_TIMEOUT     seconds for each fit of the several-processes step (default 120)
#   RANK_TIMEOUT   seconds for the ranking benchmark at 1M (default 180); SCALE=skip
#                  skips it, SCALE=tiny runs it at 100k pairs
# On this CPU: SIZES=100000 RANKS=32 TESTS=tests/core/test_sharding.py bash benchmarks/gpu.sh
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
DATA=${MFJAX_DATA:-$ROOT/../shared/data/ml-100k}
DATA=$(cd "$DATA" 2>/dev/null && pwd || echo "$DATA")
export MFJAX_DATA=$DATA
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SIZES=${SIZES:-10000000,100000000}
RANKS=${RANKS:-128}
STEPS=${STEPS:-5}
REPEATS=${REPEATS:-3}
TESTS=${TESTS:-}
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"

stamp() { echo "[$(date +%T)] $*" | tee -a "$SUMMARY"; }

# 1. The machine.
{
  date
  uname -a
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  $PY - <<'EOF'
import jax, optax, numpy, sys
import mfjax
from mfjax.core import memory
print("python", sys.version.split()[0], "jax", jax.__version__, "optax", optax.__version__,
      "numpy", numpy.__version__, "mfjax", mfjax.__version__, mfjax.__file__)
for d in jax.devices():
  # What train's memory check and benchmarks/throughput.py read.
  print(d, d.device_kind, "bytes_limit", memory.device_bytes_limit(d))
EOF
  echo "MFJAX_DATA=$DATA"
  ls "$DATA" 2>&1 | head -3
} >"$OUT/device.txt" 2>&1
stamp "device: $(grep -m1 bytes_limit "$OUT/device.txt" || echo unknown)"

# 2. The test suite. Several processes share the GPU (the CLI tests start
# their own), so no process may grab most of its memory up front.
if [ "$TESTS" != "skip" ]; then
  args=(-x -q -p no:cacheprovider)
  if ! $PY -c "import importlib.metadata as m; m.version('mfjax')" 2>/dev/null; then
    # Not installed, imported from the checkout: there is no version metadata.
    args+=(--deselect tests/test_api.py::test_version_matches_metadata)
  fi
  start=$SECONDS
  XLA_PYTHON_CLIENT_PREALLOCATE=false timeout "${TEST_TIMEOUT:-240}" \
    $PY -m pytest "${args[@]}" $TESTS >"$OUT/pytest.txt" 2>&1
  rc=$?
  stamp "pytest ${TESTS:-(all)}: exit $rc in $((SECONDS - start)) s: $(tail -1 "$OUT/pytest.txt")"
fi

# 3. Sparse throughput, full-batch Adam epochs (chunked where the full step
# would not fit the device memory; the benchmark says which).
start=$SECONDS
timeout "${BENCH_TIMEOUT:-200}" $PY benchmarks/throughput.py --sizes "$SIZES" \
  --ranks "$RANKS" --steps "$STEPS" --repeats "$REPEATS" >"$OUT/throughput.txt" 2>&1
rc=$?
stamp "throughput: exit $rc in $((SECONDS - start)) s"
grep "ratings/s" "$OUT/throughput.txt" | tee -a "$SUMMARY"

# 4. MovieLens 100k u1: the default fit (mfjax.FitSettings(), through
# mfjax.fitting.ensemble.fit_program), scored. fit_seconds is the run after
# compilation; the compile is in compile_seconds. No persistent cache.
start=$SECONDS
MFJAX_COMPILATION_CACHE=0 timeout "${FIT_TIMEOUT:-60}" $PY -m mfjax fit \
  "$DATA/u1.base" --test "$DATA/u1.test" --json >"$OUT/fit.txt" 2>&1
rc=$?
stamp "fit u1: exit $rc in $((SECONDS - start)) s: $(tail -1 "$OUT/fit.txt")"

# 5. Several devices and processes: the same u1 fit on one device
# (--one-device), then with several GPUs in one process and in one process per
# GPU (each reading its own part of the files, joined on a local port); on a
# machine of one GPU, in 2 processes of 2 CPU devices each instead. The test
# RMSE must agree (to 1e-4; benchmarks/RESULTS.md, "Several processes").
start=$SECONDS
FIT=(fit "$DATA/u1.base" --test "$DATA/u1.test" --json)
N_GPUS=$($PY -c "import jax; print(sum(d.platform == 'gpu' for d in jax.devices()))" 2>/dev/null || echo 0)
run_fit() {  # label, then the command's words
  local label=$1
  shift
  echo "== $label" >>"$OUT/processes.txt"
  MFJAX_COMPILATION_CACHE=0 timeout "${MP_TIMEOUT:-120}" "$@" >"$OUT/.run.txt" 2>&1
  echo "exit $?" >>"$OUT/processes.txt"
  grep -E '^(\[0\] )?\{' "$OUT/.run.txt" >>"$OUT/processes.txt" || tail -5 "$OUT/.run.txt" >>"$OUT/processes.txt"
}
: >"$OUT/processes.txt"
run_fit "1 device" $PY -m mfjax "${FIT[@]}" --one-device
if [ "$N_GPUS" -ge 2 ]; then
  run_fit "1 process x $N_GPUS GPUs" $PY -m mfjax "${FIT[@]}"
  PORT=$($PY -c "from mfjax import distributed; print(distributed.free_port())")
  echo "== $N_GPUS processes x 1 GPU" >>"$OUT/processes.txt"
  for i in $(seq 0 $((N_GPUS - 1))); do
    CUDA_VISIBLE_DEVICES=$i MFJAX_COMPILATION_CACHE=0 timeout "${MP_TIMEOUT:-120}" \
      $PY -m mfjax "${FIT[@]}" --coordinator "127.0.0.1:$PORT" \
      --num-processes "$N_GPUS" --process-id "$i" >"$OUT/.run$i.txt" 2>&1 &
  done
  wait
  grep -h '^{' "$OUT/.run0.txt" >>"$OUT/processes.txt" || tail -5 "$OUT/.run0.txt" >>"$OUT/processes.txt"
  tail -2 "$OUT"/.run[1-9]*.txt >>"$OUT/processes.txt" 2>/dev/null
  rm -f "$OUT"/.run[0-9]*.txt
else
  run_fit "2 processes x 2 CPU devices" env JAX_PLATFORMS=cpu $PY -m mfjax launch -n 2 --devices 2 -- "${FIT[@]}"
fi
rm -f "$OUT/.run.txt"
stamp "processes: $((SECONDS - start)) s: $(grep -o '"test_rmse": [0-9.]*' "$OUT/processes.txt" | tr '\n' ' ')"

# 6. The ranking fit (row chunks on one device) and recommend --all at 1M
# synthetic power-law pairs, whole commands and in process (RESULTS.md, "Scale").
if [ "${SCALE:-1m}" != "skip" ]; then
  start=$SECONDS
  timeout "${RANK_TIMEOUT:-180}" $PY benchmarks/ranking_scale.py --size "${SCALE:-1m}" \
    --repeats 2 --no-implicit >"$OUT/ranking_scale.txt" 2>&1
  rc=$?
  stamp "ranking scale ${SCALE:-1m}: exit $rc in $((SECONDS - start)) s"
  grep -E '^\| mfjax' "$OUT/ranking_scale.txt" | tee -a "$SUMMARY"
fi
stamp "done"

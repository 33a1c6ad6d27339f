#!/usr/bin/env bash
# The GPU path in one command (7 to 9.5 minutes on an H200): install what the machine lacks, run the
# CUDA tests, time the zoo against timm/torchvision and airbench94's 476 steps (benchmarks/gpu_bench.py).
#
#   bash benchmarks/gpu_check.sh                  # on a machine with a CUDA GPU and torch, offline
#   bash benchmarks/gpu_check.sh --cpu-practice   # every step here, on the CPU: tiny, CUDA tests skipped
#
# Writes under $OUT (default /tmp/convzoo-gpu-check): gpu_check.log (everything printed),
# gpu_tests.xml (pytest's JUnit report), gpu_bench.json. Exit status: 0 when the tests passed (or
# were all skipped, in practice) and the benchmark finished; else the first failing step's status.
# Environment: PYTHON (default python3); TESTS_TIMEOUT_S (210); BENCH_BUDGET_S (240: the benchmark
# starts nothing new after it); BENCH_TIMEOUT_S (330: the benchmark is killed after it), so the whole
# stays under the device machine's 10 minutes a command; TESTS=0 skips the tests; BENCH_ARGS adds
# arguments to gpu_bench.py, e.g. a second call for what the first had no time to compile:
#   TESTS=0 BENCH_ARGS="--skip-airbench --families wrn densenet" bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
practice=()
case "${1:-}" in
    # practice runs every step whatever the load of this machine: no budget to speak of
    --cpu-practice) practice=(--cpu-practice); BENCH_BUDGET_S=${BENCH_BUDGET_S:-1200}; BENCH_TIMEOUT_S=${BENCH_TIMEOUT_S:-1500} ;;
    "") ;;
    *) echo "usage: bash benchmarks/gpu_check.sh [--cpu-practice]" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/convzoo-gpu-check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
started=$SECONDS
step() { echo; echo "=== [$((SECONDS - started)) s] $*"; }

step "install Hydra and OmegaConf from benchmarks/gpu_wheels (offline), convzoo from this tree"
site=$(mktemp -d)
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --require-hashes --target "$site" \
    --find-links benchmarks/gpu_wheels -r benchmarks/gpu_wheels/requirements.txt || { echo "wheel install failed"; exit 2; }
export PYTHONPATH="$PWD:$site"
"$PYTHON" - <<'EOF' || { echo "convzoo does not import here"; exit 2; }
import platform, hydra, omegaconf, torch, convzoo, lightning
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"lightning {lightning.__version__}, hydra {hydra.__version__} and omegaconf {omegaconf.__version__} "
      f"from {hydra.__file__.rsplit('/', 2)[0]}")
print(f"convzoo {convzoo.__version__} from {convzoo.__file__}")
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    print(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, "
          f"compute capability {props.major}.{props.minor}; cuDNN {torch.backends.cudnn.version()}")
else:
    print("no CUDA GPU: the CUDA tests will be skipped")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm --format=csv

tests_status=0
if [ "${TESTS:-1}" != 0 ]; then
    step "CUDA tests: python -m pytest tests/test_gpu.py tests/test_data.py -m gpu"
    # -v: each test's outcome is in the log as it ends, even if the timeout stops the rest
    # the files that hold gpu tests, named: collecting all of tests/ would import what this machine may lack
    timeout "${TESTS_TIMEOUT_S:-210}" "$PYTHON" -m pytest tests/test_gpu.py tests/test_data.py -m gpu -v -rs -p no:cacheprovider \
        --durations=5 --junitxml="$OUT/gpu_tests.xml"
    tests_status=$?
fi

read -r -a bench_args <<< "${BENCH_ARGS:-}"
step "benchmark: benchmarks/gpu_bench.py ${practice[*]} ${bench_args[*]}"
timeout "${BENCH_TIMEOUT_S:-330}" "$PYTHON" benchmarks/gpu_bench.py "${practice[@]}" "${bench_args[@]}" \
    --budget-s "${BENCH_BUDGET_S:-240}" --out "$OUT/gpu_bench.json"
bench_status=$?

step "done: tests exit $tests_status, benchmark exit $bench_status; files in $OUT"
"$PYTHON" benchmarks/gpu_summary.py "$OUT/gpu_bench.json" "$OUT/gpu_tests.xml"
if [ "$tests_status" -ne 0 ]; then exit "$tests_status"; fi
exit "$bench_status"

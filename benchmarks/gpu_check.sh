#!/usr/bin/env bash
# The GPU path in one command (about 7 minutes on an H200): install what the machine lacks, run the
# CUDA tests, time the zoo against timm/torchvision and airbench94's 476 steps (benchmarks/gpu_bench.py).
#
#   bash benchmarks/gpu_check.sh                  # on a machine with a CUDA GPU and torch, offline
#   bash benchmarks/gpu_check.sh --cpu-practice   # every step here, on the CPU: tiny, CUDA tests skipped
#
# Writes under $OUT (default /tmp/convzoo-gpu-check): gpu_check.log (everything printed),
# gpu_tests.xml (pytest's JUnit report), gpu_bench.json. Exit status: 0 when the tests passed (or
# were all skipped, in practice) and the benchmark finished; else the first failing step's status.
# Environment: PYTHON (default python3), TESTS_TIMEOUT_S (240), BENCH_BUDGET_S (270: the benchmark
# starts nothing new after it), BENCH_TIMEOUT_S (390: the benchmark is killed after it).
set -uo pipefail
cd "$(dirname "$0")/.."
practice=()
case "${1:-}" in
    --cpu-practice) practice=(--cpu-practice) ;;
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
      f"lightning {lightning.__version__}, hydra {hydra.__version__}, omegaconf {omegaconf.__version__}")
print(f"convzoo {convzoo.__version__} from {convzoo.__file__}")
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    print(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, "
          f"compute capability {props.major}.{props.minor}; cuDNN {torch.backends.cudnn.version()}")
else:
    print("no CUDA GPU: the CUDA tests will be skipped")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm --format=csv

step "CUDA tests: python -m pytest tests/test_gpu.py -m gpu"
timeout "${TESTS_TIMEOUT_S:-240}" "$PYTHON" -m pytest tests/test_gpu.py -m gpu -q -rs -p no:cacheprovider \
    --junitxml="$OUT/gpu_tests.xml"
tests_status=$?

step "benchmark: benchmarks/gpu_bench.py ${practice[*]}"
timeout "${BENCH_TIMEOUT_S:-390}" "$PYTHON" benchmarks/gpu_bench.py "${practice[@]}" \
    --budget-s "${BENCH_BUDGET_S:-270}" --out "$OUT/gpu_bench.json"
bench_status=$?

step "done: tests exit $tests_status, benchmark exit $bench_status; files in $OUT"
"$PYTHON" benchmarks/gpu_summary.py "$OUT/gpu_bench.json" "$OUT/gpu_tests.xml"
if [ "$tests_status" -ne 0 ]; then exit "$tests_status"; fi
exit "$bench_status"

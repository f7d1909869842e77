#!/bin/bash
# Every GPU figure of the README's Speed section in one run (each row under a time limit: 9 minutes at most):
#   bash benchmarks/gpu_rows.sh [LOG]        (LOG default: gpu_rows.txt, or $OUT/gpu_rows.txt when $OUT is set)
# Needs torch + torchvision with CUDA and OpenCV; nothing else (speed.py brings a stand-in for tqdm).
cd "$(dirname "$0")/.." || exit 1
log_file=${1:-${OUT:+$OUT/}gpu_rows.txt}
step() { echo "== $(date +%T) $*"; }
{
    step environment
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python -c "import torch, torchvision, cv2; print(torch.__version__, torchvision.__version__, cv2.__version__)"
    step "cloze networks: training and scoring cubes/s"
    timeout 150 python benchmarks/speed.py --device cuda --rows cloze --repeats 3 --steps 20 \
        --variants default default_bf16
    step "FlowNet2 pairs/s and Cascade R-CNN frames/s per precision"
    timeout 200 python benchmarks/speed.py --device cuda --rows flownet2 cascade_rcnn --warmup 2 --repeats 3
    step "end to end and cube extraction, 120 frames per video"
    timeout 200 python benchmarks/speed.py --device cuda --rows end_to_end cubes --repeats 1 --warmup 1 \
        --e2e-frames 120
    step done
} 2>&1 | tee "$log_file"

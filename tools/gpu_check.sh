#!/usr/bin/env bash
# The CUDA checks, on a machine with a GPU, a CUDA build of torch and nvcc:
#
#   1. mmcv's CUDA ops (built from source with FORCE_CUDA=1 if the installed
#      mmcv has none);
#   2. the tests marked `cuda` (they skip on a CPU-only machine);
#   3. the demo trained for a few iterations with --amp, and tested;
#   4. the speed benchmarks on CUDA with AMP (and channels-last): the
#      backbones (eager, deploy; inference and training), the Faster R-CNN
#      R2-101 training step, and its inference against the same detector
#      on ResNet-101 (eager and deploy).
#
#   tools/gpu_check.sh            (or: make gpu-check)
#
# PYTHON: the interpreter (default: .venv/bin/python, else python3).
# OUT: where the logs and JSON go (default: work_dirs/gpu_check).
# Each step's output is in OUT/<step>.log; the script stops at the first
# step that fails and names it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OUT=${OUT:-work_dirs/gpu_check}
mkdir -p "$OUT"

step() {
    local name=$1
    shift
    echo "==> [gpu-check] $name"
    if ! "$@" >"$OUT/$name.log" 2>&1; then
        tail -20 "$OUT/$name.log" >&2
        echo "error: gpu-check step '$name' failed; its log: $OUT/$name.log" >&2
        exit 1
    fi
    grep -E '^\| |fps|passed|skipped|failed|coco/bbox_mAP:' "$OUT/$name.log" | tail -25 || true
}

"$PYTHON" - <<'EOF'
import shutil, sys
import torch
if not torch.cuda.is_available():
    sys.exit('error: torch sees no CUDA GPU here (torch '
             f'{torch.__version__}); run gpu-check on a GPU machine with a '
             'CUDA build of torch')
if shutil.which('nvcc') is None:
    sys.exit('error: nvcc is not on PATH; mmcv\'s CUDA ops are built with it')
print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, '
      f'{torch.cuda.get_device_name()}')
EOF

if ! "$PYTHON" -c "from mmcv.ops import get_compiling_cuda_version as v; \
        import sys; sys.exit(v() in ('', 'not available'))" 2>/dev/null; then
    MMCV_REQ=$(grep -E '^mmcv\b' requirements.txt)
    step mmcv-cuda-ops env MMCV_WITH_OPS=1 FORCE_CUDA=1 \
        MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PYTHON" -m pip install \
        --no-build-isolation --no-cache-dir --force-reinstall --no-deps \
        "$MMCV_REQ"
fi

step cuda-tests "$PYTHON" -m pytest -m cuda -v

DATA="$OUT/demo_data"
step demo-data "$PYTHON" tools/misc/generate_demo_data.py --out "$DATA"
DEMO=configs/demo/faster_rcnn_r2_50_fpn_demo.py
step demo-train-amp "$PYTHON" tools/train.py "$DEMO" --amp \
    --work-dir "$OUT/demo" --cfg-options "data_root=$DATA/" \
    train_cfg.max_iters=40 train_cfg.val_interval=40 \
    default_hooks.checkpoint.interval=40 default_hooks.logger.interval=10
step demo-test "$PYTHON" tools/test.py "$DEMO" "$OUT/demo/iter_40.pth" \
    --work-dir "$OUT/demo" --cfg-options "data_root=$DATA/"

step backbone-inference "$PYTHON" tools/analysis_tools/benchmark_backbone.py \
    --device cuda --amp --batch 8 --size 512 512 --repeats 20 \
    --modes nchw channels_last deploy --out "$OUT/backbone_inference.json"
step backbone-train "$PYTHON" tools/analysis_tools/benchmark_backbone.py \
    --device cuda --amp --batch 8 --size 512 512 --repeats 20 --train \
    --modes nchw channels_last --out "$OUT/backbone_train.json"
FASTER=configs/faster_rcnn_r2_101_fpn_2x.py
step detector-train "$PYTHON" tools/analysis_tools/benchmark_train.py \
    "$FASTER" --device cuda --amp --size 800 1333 --batch 2 --repeats 10 \
    --with-cp --out "$OUT/detector_train.json"
for form in eager deploy; do
    step "detector-$form" "$PYTHON" tools/analysis_tools/benchmark.py \
        "$FASTER" --device cuda --against-backbone resnet \
        --amp $([ "$form" = deploy ] && echo --deploy) \
        --num-images 100 --work-dir "$OUT/detector_$form" \
        --cfg-options "data_root=$DATA/" model.backbone.init_cfg=None
done
echo "==> [gpu-check] passed; logs and JSON in $OUT"

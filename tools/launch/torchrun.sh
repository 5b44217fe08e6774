#!/usr/bin/env bash
# What tools/dist_train.sh and tools/dist_test.sh share: run one of the tools
# on NPROC processes per node with torchrun and --launcher pytorch.
#
#   tools/launch/torchrun.sh NPROC TOOL [tool args]     (TOOL: train.py, test.py)
#
# Environment (mmdet's names): NNODES (1), NODE_RANK (0), MASTER_ADDR
# (127.0.0.1), PORT (29500); PYTHON (python) picks the interpreter.
set -euo pipefail
NPROC=$1
TOOL=$2
shift 2
TOOLS=$(cd "$(dirname "$0")/.." && pwd)

PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" \
    "$TOOLS/$TOOL" "$@" --launcher pytorch

#!/usr/bin/env bash
# Train on NPROC processes per node with torchrun: one per GPU (nccl), or, on
# a machine without GPUs, NPROC CPU processes (gloo).
#
#   tools/dist_train.sh CONFIG NPROC [tools/train.py args]
#
# Several nodes: run it on every node with the same NNODES, MASTER_ADDR and
# PORT, and NODE_RANK=0..NNODES-1, e.g.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.1.1.1 tools/dist_train.sh CONFIG 8
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NPROC [tools/train.py args]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
exec "$(dirname "$0")/launch/torchrun.sh" "$NPROC" train.py "$CONFIG" "$@"

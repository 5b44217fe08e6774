#!/usr/bin/env bash
# Test a checkpoint on NPROC processes per node with torchrun. The ranks'
# results are gathered before the COCO evaluation, so the AP is that of a
# single-process test.
#
#   tools/dist_test.sh CONFIG CHECKPOINT NPROC [tools/test.py args]
#
# NNODES, NODE_RANK, MASTER_ADDR and PORT as for tools/dist_train.sh.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT NPROC [tools/test.py args]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
exec "$(dirname "$0")/launch/torchrun.sh" "$NPROC" test.py "$CONFIG" \
    "$CHECKPOINT" "$@"

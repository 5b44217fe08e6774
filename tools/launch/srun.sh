#!/usr/bin/env bash
# What tools/slurm_train.sh and tools/slurm_test.sh share: run one of the
# tools as a Slurm job step of GPUS tasks with --launcher slurm. A task that
# fails ends the whole step (--kill-on-bad-exit=1).
#
#   tools/launch/srun.sh PARTITION JOB_NAME TOOL [tool args]
#
# Environment (mmdet's names): GPUS (8) tasks in all, GPUS_PER_NODE (8)
# tasks per node, CPUS_PER_TASK (5), SRUN_ARGS (extra srun options). GRES
# (gpu:GPUS_PER_NODE) is the generic resource requested per node; GRES=none
# requests none, for CPU-only clusters, where each task is a CPU process.
# OMP_NUM_THREADS defaults to CPUS_PER_TASK; PYTHON (python) picks the
# interpreter.
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
TOOL=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
GRES=${GRES:-gpu:$GPUS_PER_NODE}
TOOLS=$(cd "$(dirname "$0")/.." && pwd)

GRES_OPTION=()
if [ "$GRES" != none ]; then
    GRES_OPTION=(--gres="$GRES")
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$CPUS_PER_TASK}
export PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}"
# SRUN_ARGS is split into words on purpose: it holds several options.
# shellcheck disable=SC2086
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    "${GRES_OPTION[@]}" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS:-} \
    "${PYTHON:-python}" -u "$TOOLS/$TOOL" "$@" --launcher slurm

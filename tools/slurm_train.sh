#!/usr/bin/env bash
# Train as a Slurm job step of GPUS tasks, GPUS_PER_NODE per node.
#
#   GPUS=16 tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]
#
# Environment: GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS;
# on a CPU-only cluster GRES=none (see tools/launch/srun.sh).
# STOP_SIGNAL_LEAD (120): Slurm sends SIGUSR1 that many seconds before the
# time limit, and training stops at a checkpoint of the iteration it ends
# (0: no signal). Inside a requeueable batch job (sbatch --requeue) the job
# then requeues itself and resumes; srun's own allocation cannot be
# requeued: the last line says how to resume.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py args]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4
LEAD=${STOP_SIGNAL_LEAD:-120}
if [ "$LEAD" != 0 ]; then
    export SRUN_ARGS="--signal=USR1@$LEAD ${SRUN_ARGS:-}"
fi
exec "$(dirname "$0")/launch/srun.sh" "$PARTITION" "$JOB_NAME" train.py \
    "$CONFIG" --work-dir "$WORK_DIR" "$@"

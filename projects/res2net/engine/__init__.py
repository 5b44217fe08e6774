# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""What a run needs around mmengine: the hooks, the mid-epoch resumable
loop, stopping and requeuing on a signal, atomic file writes, the known
faults of a run as one line, the distributed set-up, the checks before the
Runner, log reading and the tools' shared command line."""
from .fileio import AtomicLocalBackend
from .hooks import (DeployHook, ExactResumeHook, FiniteLossHook,
                    SignalCheckpointHook)
from .loops import ResumableEpochBasedTrainLoop

__all__ = [
    'AtomicLocalBackend', 'DeployHook', 'ExactResumeHook', 'FiniteLossHook',
    'ResumableEpochBasedTrainLoop', 'SignalCheckpointHook'
]

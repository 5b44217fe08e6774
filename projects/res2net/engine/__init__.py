# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""What a run needs around mmengine: the hooks, atomic file writes, the
distributed set-up, the checks before the Runner, log reading and the
tools' shared command line."""
from .fileio import AtomicLocalBackend
from .hooks import DeployHook, ExactResumeHook, FiniteLossHook

__all__ = [
    'AtomicLocalBackend', 'DeployHook', 'ExactResumeHook', 'FiniteLossHook'
]

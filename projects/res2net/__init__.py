# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Res2Net backbones for MMDetection 3.x.

Importing this package (configs do it through ``custom_imports``) registers
:class:`Res2NetBackbone`, :class:`Res2NetDLA` and the plain :class:`DLA`
(its baseline) in ``mmdet.registry.MODELS``, the hooks
(:class:`DeployHook`, :class:`ExactResumeHook`, :class:`FiniteLossHook`,
:class:`SignalCheckpointHook`) in mmengine's ``HOOKS``, the mid-epoch
resumable :class:`ResumableEpochBasedTrainLoop` in its ``LOOPS`` and
:class:`AtomicLocalBackend` among mmengine's file backends, the training
data's per-sample random streams (:class:`SeededSampler`,
:class:`SeededDataset`) in mmengine's ``DATA_SAMPLERS`` and ``DATASETS``,
:class:`FasterCocoMetric` (mmdet's ``CocoMetric`` evaluated by
faster-coco-eval) in ``mmdet.registry.METRICS``, and lets torch's
weights-only loader read the checkpoints that mmengine writes.
"""
from .datasets import SeededDataset, SeededSampler
from .engine import (AtomicLocalBackend, DeployHook, ExactResumeHook,
                     FiniteLossHook, ResumableEpochBasedTrainLoop,
                     SignalCheckpointHook)
from .evaluation import FasterCocoMetric
from .models import DLA, Bottle2neck, Res2NetBackbone, Res2NetDLA
from .models.checkpoint import allow_mmengine_checkpoints

allow_mmengine_checkpoints()

__all__ = [
    'Bottle2neck', 'DLA', 'Res2NetBackbone', 'Res2NetDLA', 'DeployHook',
    'ExactResumeHook', 'FiniteLossHook', 'SignalCheckpointHook',
    'ResumableEpochBasedTrainLoop', 'AtomicLocalBackend', 'SeededDataset',
    'SeededSampler', 'FasterCocoMetric'
]

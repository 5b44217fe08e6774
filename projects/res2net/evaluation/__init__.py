# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Evaluation: mmdet's ``CocoMetric`` with a faster COCOeval (the
``faster-coco-eval`` package), the same AP."""
from .faster_coco_metric import FasterCocoMetric

__all__ = ['FasterCocoMetric']

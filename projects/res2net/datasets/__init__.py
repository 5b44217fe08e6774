# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Data: a random stream per training sample, the demo dataset generator and
the dataset checks."""
from .sample_streams import SeededDataset, SeededSampler

__all__ = ['SeededDataset', 'SeededSampler']

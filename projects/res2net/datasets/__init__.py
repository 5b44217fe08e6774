# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Data: the demo dataset generator and the dataset checks."""

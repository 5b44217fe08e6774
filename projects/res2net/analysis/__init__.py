# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Analysis: speed and memory measurement, FLOPs, curves, CAM maps."""

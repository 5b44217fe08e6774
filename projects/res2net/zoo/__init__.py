# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The model zoo: its table and metafile, runs and their steps, Slurm jobs,
publishing."""

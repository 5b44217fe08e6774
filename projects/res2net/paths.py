# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Where things are: the repository and the files that one part of the
project writes into a work dir and another reads, each named once."""
from pathlib import Path

# The repository: configs/ and tools/ lie here.
REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO_ROOT / 'tools'

# In a work dir: tools/test.py's COCO metrics, benchmark.py's speed and
# memory, publish_model.py's record of what it published, and the record of
# the Slurm job of a zoo run (tools/misc/zoo_slurm.py).
METRICS_JSON = 'metrics.json'
BENCHMARK_JSON = 'benchmark.json'
PUBLISHED_JSON = 'published.json'
ZOO_JOB_JSON = 'zoo_job.json'

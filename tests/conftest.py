# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Fixtures shared by the tests: generated data and running the tools."""
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from projects.res2net.demo_data import generate_demo_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def repo() -> Path:
    return REPO


@pytest.fixture(scope='session')
def tiny_demo_data(tmp_path_factory) -> Path:
    """Two training and two validation images: one step, one test pass."""
    root = tmp_path_factory.mktemp('tiny_demo')
    generate_demo_dataset(root / 'data', num_train=2, num_val=2, seed=1)
    return root / 'data'


@pytest.fixture(scope='session')
def run_tool() -> Callable[..., subprocess.CompletedProcess]:
    """Run ``tools/<name>`` like a user would, from the repo root."""

    def run(tool: str, *args, timeout: float = 900) -> \
            subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        return subprocess.run(
            [sys.executable, f'tools/{tool}', *map(str, args)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout)

    return run

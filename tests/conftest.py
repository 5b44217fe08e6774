# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Fixtures shared by the tests: generated data and running the tools."""
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch import nn

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


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BN statistic a distinct random value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            values = torch.randn(tensor.shape, generator=gen) * 0.1
            if name.endswith('running_var'):
                values = values.abs() + 0.5
            tensor.copy_(values)
    return model


@pytest.fixture(scope='session')
def randomise() -> Callable[..., nn.Module]:
    """Fill a model with random weights in place and return it."""
    return _randomise

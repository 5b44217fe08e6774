# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Fixtures shared by the tests: generated data and running the tools."""
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, List, NamedTuple, Optional

import pytest
import torch
from torch import nn

from projects.res2net.demo_data import generate_demo_dataset

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'


@pytest.fixture(scope='session')
def repo() -> Path:
    return REPO


@pytest.fixture(scope='session')
def tiny_demo_data(tmp_path_factory) -> Path:
    """Two training and two validation images: one step, one test pass."""
    root = tmp_path_factory.mktemp('tiny_demo')
    generate_demo_dataset(root / 'data', num_train=2, num_val=2, seed=1)
    return root / 'data'


def _quick(data_root, **overrides) -> List[str]:
    """--cfg-options for a short demo-config run on ``data_root``."""
    options = {
        'data_root': f'{data_root}/',
        'train_dataloader.batch_size': 2,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False,
        'test_dataloader.num_workers': 0,
        'test_dataloader.persistent_workers': False,
        'train_cfg.val_interval': 1000,
    }
    options.update(overrides)
    return ['--cfg-options'] + [f'{k}={v}' for k, v in options.items()]


@pytest.fixture(scope='session')
def quick() -> Callable[..., List[str]]:
    """``quick(data_root, **overrides)``: options for a short run."""
    return _quick


@pytest.fixture(scope='session')
def run_tool() -> Callable[..., subprocess.CompletedProcess]:
    """Run ``tools/<name>`` like a user would, from the repo root.

    ``env`` adds to (or overrides) this process's environment.
    """

    def run(tool: str,
            *args,
            env: Optional[Dict[str, str]] = None,
            timeout: float = 900) -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
        return subprocess.run(
            [sys.executable, f'tools/{tool}', *map(str, args)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout)

    return run


def _user_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Assert that a tool stopped on a user error, as ``run_tool`` ran it:
    exit 2, no traceback, a last line ``error: ...`` holding every
    fragment. Returns that line."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: '), last
    for fragment in fragments:
        assert fragment in last, last
    return last


@pytest.fixture(scope='session')
def user_error() -> Callable[..., str]:
    """``user_error(result, *fragments)``: see :func:`_user_error`."""
    return _user_error


@pytest.fixture(scope='session')
def load_tool() -> Callable[[str], ModuleType]:
    """``load_tool('analysis_tools/x.py')``: a tool script as a module.

    tools/ is not a package; this imports the file itself, for tests of a
    tool's functions in-process.
    """

    def load(tool: str) -> ModuleType:
        path = REPO / 'tools' / tool
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


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


def free_port() -> int:
    """A TCP port that nothing listens on now (for a rendezvous)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='session')
def dist_devices() -> Dict[str, str]:
    """The devices of the launcher tests, as environment variables.

    They run 2 processes: on 2 GPUs over nccl where there are that many,
    else on the CPU over gloo (one GPU cannot hold two ranks). A
    single-process run compared with them gets the same.
    """
    return {} if torch.cuda.device_count() >= 2 else {
        'CUDA_VISIBLE_DEVICES': ''
    }


@pytest.fixture
def launcher_env(dist_devices) -> Dict[str, str]:
    """The environment for the launcher scripts: this interpreter, a port."""
    return dict(
        os.environ,
        PYTHON=sys.executable,
        PYTHONUNBUFFERED='1',
        PORT=str(free_port()),
        **dist_devices)


class TrainedDemo(NamedTuple):
    root: Path  # data/ (the demo data) and work/ (the run) below it
    checkpoint: Path
    log: str


@pytest.fixture(scope='session')
def trained_demo(tmp_path_factory, run_tool) -> TrainedDemo:
    """The demo config trained for 150 iterations on a full-size train split.

    The 51 validation images do not split evenly over 2 processes, so a
    distributed test pads a rank and must drop the padding again.
    """
    root = tmp_path_factory.mktemp('learning')
    generate_demo_dataset(root / 'data', num_train=600, num_val=51, seed=3)
    work_dir = root / 'work'
    result = run_tool(
        'train.py', DEMO_CONFIG, '--work-dir', work_dir,
        *_quick(
            root / 'data', **{
                'train_dataloader.batch_size': 8,
                'train_cfg.max_iters': 150,
                'train_cfg.val_interval': 150,
                'default_hooks.checkpoint.interval': 150,
                'param_scheduler.1.milestones': '[120]'
            }))
    assert result.returncode == 0, result.stderr[-3000:]
    return TrainedDemo(root, work_dir / 'iter_150.pth',
                       result.stdout + result.stderr)

# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Backend choice, launcher variables and the CPU DDP wrapper."""
import os
from types import SimpleNamespace

import pytest
import torch.distributed as torch_dist
from mmengine.config import Config
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from projects.res2net.engine import dist
from projects.res2net.engine.cli import run_tool
from projects.res2net.engine.dist import (choose_backend,
                                          configure_distributed,
                                          export_rank_variables)
from projects.res2net.errors import UserError


@pytest.mark.parametrize(
    'requested, configured, cuda, expected',
    [
        ('auto', 'nccl', True, 'nccl'),  # mmdet's default on GPUs
        ('auto', 'nccl', False, 'gloo'),  # ... and on a CPU-only machine
        ('auto', None, True, 'nccl'),
        ('auto', None, False, 'gloo'),
        ('auto', 'gloo', True, 'gloo'),  # a config's own choice is kept
        ('gloo', 'nccl', True, 'gloo'),  # forced
        ('gloo', None, False, 'gloo'),
        ('nccl', 'gloo', True, 'nccl'),
    ])
def test_choose_backend(requested, configured, cuda, expected):
    assert choose_backend(requested, configured, cuda=cuda) == expected


def test_forcing_nccl_without_a_gpu_is_a_user_error():
    with pytest.raises(UserError, match='needs a CUDA GPU.*--dist-backend'):
        choose_backend('nccl', 'nccl', cuda=False)
    with pytest.raises(UserError, match='choose one of auto, nccl, gloo'):
        choose_backend('mpi', None, cuda=True)


def test_slurm_variables_become_torch_variables(monkeypatch):
    calls = []

    class Done:
        stdout = 'node-07\nnode-08\n'

    def fake_run(command, **kwargs):
        calls.append(command)
        return Done()

    monkeypatch.setattr(dist.subprocess, 'run', fake_run)
    env = {
        'SLURM_PROCID': '5',
        'SLURM_NTASKS': '8',
        'SLURM_LOCALID': '1',
        'SLURM_STEP_NODELIST': 'node-[07-08]',
        'PORT': '29123',
    }
    export_rank_variables('slurm', env)
    assert calls == [['scontrol', 'show', 'hostnames', 'node-[07-08]']]
    assert (env['RANK'], env['WORLD_SIZE'], env['LOCAL_RANK']) == \
        ('5', '8', '1')
    assert (env['MASTER_ADDR'], env['MASTER_PORT']) == ('node-07', '29123')

    # MASTER_ADDR and MASTER_PORT that are already set win.
    env = dict(env, MASTER_ADDR='10.0.0.1', MASTER_PORT='4000')
    export_rank_variables('slurm', env)
    assert (env['MASTER_ADDR'], env['MASTER_PORT']) == ('10.0.0.1', '4000')
    assert len(calls) == 1


def test_mpi_and_torchrun_variables():
    env = {
        'OMPI_COMM_WORLD_RANK': '3',
        'OMPI_COMM_WORLD_SIZE': '4',
        'OMPI_COMM_WORLD_LOCAL_RANK': '1',
        'MASTER_ADDR': 'host',
    }
    export_rank_variables('mpi', env)
    assert (env['RANK'], env['WORLD_SIZE'], env['LOCAL_RANK'],
            env['MASTER_PORT']) == ('3', '4', '1', '29500')
    torchrun = {
        'RANK': '1',
        'WORLD_SIZE': '2',
        'LOCAL_RANK': '1',
        'MASTER_ADDR': '127.0.0.1',
        'MASTER_PORT': '29400'
    }
    export_rank_variables('pytorch', torchrun)
    assert torchrun['MASTER_PORT'] == '29400'


@pytest.mark.parametrize('launcher, fix', [
    ('pytorch', 'tools/dist_train.sh'),
    ('slurm', 'tools/slurm_train.sh'),
    ('mpi', 'mpirun'),
])
def test_a_launcher_without_its_variables_says_how_to_start(launcher, fix):
    with pytest.raises(UserError) as info:
        export_rank_variables(launcher, {})
    message = str(info.value)
    assert f'--launcher {launcher}' in message and fix in message
    assert 'drop --launcher' in message


def _config(**kwargs) -> Config:
    return Config(
        dict(
            env_cfg=dict(dist_cfg=dict(backend='nccl', timeout=600)),
            **kwargs))


def test_cpu_runs_get_gloo_and_a_cpu_ddp_wrapper(monkeypatch):
    monkeypatch.setattr(dist.torch.cuda, 'is_available', lambda: False)
    cfg = _config(launcher='pytorch', find_unused_parameters=True)
    configure_distributed(cfg, 'auto')
    assert cfg.env_cfg.dist_cfg == dict(backend='gloo', timeout=600)
    # mmengine's default wrapper, but DDP's CPU mode.
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=True,
        device_ids=None)

    # A config's own DDP wrapper keeps its settings.
    cfg = _config(
        launcher='slurm',
        model_wrapper_cfg=dict(
            type='MMDistributedDataParallel', static_graph=True))
    configure_distributed(cfg, 'gloo')
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel', static_graph=True, device_ids=None)


def test_gpu_runs_keep_mmengine_defaults(monkeypatch):
    monkeypatch.setattr(dist.torch.cuda, 'is_available', lambda: True)
    cfg = _config(launcher='pytorch')
    configure_distributed(cfg, 'auto')
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    # Runner.wrap_model's device_ids=[LOCAL_RANK] then applies.
    assert 'model_wrapper_cfg' not in cfg


def test_dist_backend_without_a_launcher_is_refused():
    cfg = _config(launcher='none')
    configure_distributed(cfg, 'auto')
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'  # untouched
    with pytest.raises(UserError, match='distributed runs only'):
        configure_distributed(cfg, 'gloo')


def _os_threads() -> set:
    """The ids of this process's OS threads (a thread that an earlier test
    left may end meanwhile: the test looks at the threads the run adds)."""
    return set(os.listdir('/proc/self/task'))


def _join_a_gloo_group(tmp_path) -> None:
    """This process as the one rank of a gloo group, as a tool's would."""
    torch_dist.init_process_group(
        'gloo',
        init_method=f'file://{tmp_path}/rendezvous',
        rank=0,
        world_size=1)


@pytest.mark.skipif(
    not os.path.isdir('/proc/self/task'), reason='counts threads in /proc')
def test_a_tool_frees_its_process_group(tmp_path):
    """run_tool ends a distributed run with the group freed and gloo's
    threads joined, although the run's DDP wrapper sits in a reference
    cycle (as in the Runner) and a broadcast was the last collective (as
    mmengine's metrics): a gloo thread left to free that broadcast's
    tensors while the interpreter exits aborts the process."""
    threads = _os_threads()
    _join_a_gloo_group(tmp_path)

    def main():
        model = DistributedDataParallel(nn.Linear(2, 2))
        runner = SimpleNamespace(model=model)
        runner.self = runner  # a cycle, as the Runner's hooks make
        torch_dist.broadcast_object_list([{'coco/bbox_mAP': 0.5}], src=0)
        assert _os_threads() - threads  # gloo's workers and its TCP loop

    run_tool(main)
    assert not torch_dist.is_initialized()
    assert not _os_threads() - threads


def test_a_tool_leaves_its_process_group_after_an_error(tmp_path):
    """A run that stops on a user error leaves the group too."""
    _join_a_gloo_group(tmp_path)

    def main():
        raise UserError('stop here')

    with pytest.raises(SystemExit):
        run_tool(main)
    assert not torch_dist.is_initialized()
    dist.close_process_group()  # nothing to leave: no error

# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/dist_train.sh and tools/dist_test.sh: torchrun, really launched.

On a machine with fewer than 2 GPUs these run CPU processes over gloo
(``dist_devices`` hides a single GPU), chosen automatically; with 2 GPUs,
one GPU per process over nccl.
"""
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope

import projects.res2net  # noqa: F401  (registers the backbone)
from projects.res2net.datasets.demo_data import generate_demo_dataset

DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'

pytestmark = pytest.mark.dist


@pytest.fixture(scope='module')
def backend(dist_devices) -> str:
    """The backend ``auto`` must pick for the launcher tests' devices."""
    return 'gloo' if dist_devices else 'nccl'


def losses(log: str) -> dict:
    """``{iteration: loss}`` from the Runner's ``Iter(train)`` lines."""
    found = re.findall(r'Iter\(train\) \[ *(\d+)/\d+\].*? loss: ([0-9.]+)',
                       log)
    return {int(it): float(loss) for it, loss in found}


@pytest.fixture(scope='module')
def odd_val_data(tmp_path_factory) -> Path:
    """The demo data's first 5 validation images (an image is the same for
    any count): they do not split evenly over 2 processes, so a
    distributed test pads a rank and must drop the padding again, and the
    ranks' results interleave (rank 0 tests images 0, 2, 4)."""
    data = tmp_path_factory.mktemp('odd_val') / 'data'
    generate_demo_dataset(data, num_train=2, num_val=5)
    return data


@pytest.fixture(scope='module')
def single_process_metrics(run_tool, trained_demo, odd_val_data, quick,
                           dist_devices) -> dict:
    """test.py's metrics for the trained demo checkpoint, one process.

    One thread, as in each of torchrun's processes (its default for several
    processes), so that the arithmetic is the same.
    """
    work_dir = odd_val_data.parent / 'single'
    result = run_tool(
        'test.py',
        DEMO,
        trained_demo.checkpoint,
        '--work-dir',
        work_dir,
        *quick(odd_val_data),
        env=dict(OMP_NUM_THREADS='1', **dist_devices))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((work_dir / 'metrics.json').read_text())['metrics']
    assert metrics['coco/bbox_mAP'] > 0.1  # a meaningful AP
    return metrics


def test_dist_test_gives_the_single_process_ap(run_script, launcher_env,
                                               backend, trained_demo,
                                               odd_val_data, quick,
                                               single_process_metrics,
                                               tmp_path):
    """Results are gathered across ranks: the AP is exactly the same.

    5 images over 2 processes: one rank gets a padded sample, which the
    gathering must drop again.
    """
    result = run_script(
        'dist_test.sh',
        DEMO,
        trained_demo.checkpoint,
        2,
        '--work-dir',
        tmp_path,
        *quick(odd_val_data),
        env=dict(launcher_env, OMP_NUM_THREADS='1'))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert f"'backend': '{backend}'" in log
    assert re.search(r'Iter\(test\) \[3/3\]', log), 'not 3 images a rank'
    got = json.loads((tmp_path / 'metrics.json').read_text())
    assert got['metrics'] == single_process_metrics


def test_two_nodes_of_one_process(repo, launcher_env, trained_demo,
                                  odd_val_data, quick, single_process_metrics,
                                  tmp_path):
    """NNODES, NODE_RANK, MASTER_ADDR, PORT: two 'nodes' on this machine."""
    jobs = []
    for node in range(2):
        env = dict(
            launcher_env,
            NNODES='2',
            NODE_RANK=str(node),
            MASTER_ADDR='127.0.0.1',
            OMP_NUM_THREADS='1')
        command = [
            'tools/dist_test.sh', DEMO,
            str(trained_demo.checkpoint), '1', '--work-dir',
            str(tmp_path / f'node{node}'), *quick(odd_val_data)
        ]
        jobs.append(
            subprocess.Popen(
                command,
                cwd=repo,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True))
    logs = [job.communicate(timeout=600)[0] for job in jobs]
    for job, log in zip(jobs, logs):
        assert job.returncode == 0, log[-3000:]
    # Global rank 0 (on node 0) evaluates all 5 images and writes metrics.
    got = json.loads((tmp_path / 'node0' / 'metrics.json').read_text())
    assert got['metrics'] == single_process_metrics
    assert not (tmp_path / 'node1' / 'metrics.json').exists()


def _start_weights(path: Path) -> None:
    """The demo detector as built and initialised (seed 0), saved as the
    checkpoint that both runs load: the weights before the step, without a
    run that trains nothing."""
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(DEMO).model)
    model.init_weights()
    torch.save({'state_dict': model.state_dict()}, path)


def _weights(checkpoint: Path) -> torch.Tensor:
    """Every trained parameter of a checkpoint, as one vector."""
    state = torch.load(checkpoint, map_location='cpu')['state_dict']
    return torch.cat([
        value.flatten().double() for key, value in sorted(state.items())
        if value.is_floating_point() and 'running_' not in key
    ])


def test_two_processes_take_the_one_process_step(call_tool, run_script,
                                                 launcher_env, quick,
                                                 tmp_path):
    """2 processes x 4 images take the SGD step of 1 process x 8 images.

    DDP averages the ranks' gradients: from the same weights (one
    checkpoint loaded), on the same 8 images (the sampler gives rank r every
    other image of the one shuffled order, and each image is augmented from
    its own stream), that is the one process's gradient when nothing couples
    the images of a batch, and the lr is the same. So the runs remove what
    would: BN uses its running statistics (``norm_eval``), the RPN and RoI
    samplers take every anchor and proposal instead of a random draw, the
    gradients are not clipped (clipping would hide a sum for a mean), the
    lr is constant.
    Left: each rank divides its losses by its own images' sample counts, and
    float rounding. Measured: the steps 5e-6 apart (relative). A sum for a
    mean, or another lr, moves the step by 100%; a rank stepping on its own
    4 images, unsynchronised, by about 18% (one process's step on 4 of the
    images against its step on all 8).
    """
    data = tmp_path / 'data'
    generate_demo_dataset(data, num_train=8, num_val=2, seed=3)
    start = tmp_path / 'start.pth'
    _start_weights(start)
    options = {
        'load_from': start,
        'train_cfg.max_iters': 1,
        'default_hooks.checkpoint.interval': 1,
        'randomness.seed': 0,
        'model.backbone.norm_eval': True,
        'model.train_cfg.rpn.sampler.num': 10**6,
        'model.train_cfg.rcnn.sampler.num': 10**6,
        'optim_wrapper.clip_grad': None,
        'param_scheduler': None,
        'val_cfg': None,
        'val_dataloader': None,
        'val_evaluator': None,
    }

    # The one process's step in this one: a step to 1e-3, not bit for bit.
    one = call_tool(
        'train.py', DEMO, '--work-dir', tmp_path / 'one',
        *quick(data, **options, **{'train_dataloader.batch_size': 8}))
    assert one.returncode == 0, (one.stdout + one.stderr)[-3000:]
    start = _weights(start)
    one = _weights(tmp_path / 'one' / 'iter_1.pth') - start
    two = run_script(
        'dist_train.sh',
        DEMO,
        2,
        '--work-dir',
        tmp_path / 'two',
        *quick(data, **options, **{'train_dataloader.batch_size': 4}),
        env=launcher_env)
    assert two.returncode == 0, (two.stdout + two.stderr)[-3000:]
    two = _weights(tmp_path / 'two' / 'iter_1.pth') - start
    assert one.norm() > 0
    difference = float((two - one).norm() / one.norm())
    print(f'2 x 4 step against 1 x 8: {difference:.2e} apart', file=sys.stderr)
    assert difference < 1e-3


def test_a_dead_rank_ends_the_job(kill_rank_mid_training, launcher_env,
                                  tiny_demo_data, quick, tmp_path):
    """SIGKILL one rank: torchrun stops the others and fails, no hang."""
    ended = kill_rank_mid_training([
        'tools/dist_train.sh', DEMO, 2, '--work-dir', tmp_path / 'wd', *quick(
            tiny_demo_data, **{
                'train_cfg.max_iters': 10000,
                'train_dataloader.batch_size': 1,
                'default_hooks.logger.interval': 1
            })
    ],
                                   env=launcher_env,
                                   rank_variable='RANK')
    assert ended['returncode'] not in (0, None), ended['log'][-3000:]
    assert ended['seconds'] < 60


def test_a_signal_to_one_rank_stops_every_rank_at_a_checkpoint(
        kill_rank_mid_training, launcher_env, tiny_demo_data, quick, tmp_path):
    """SIGTERM to rank 1 only: both ranks end the iteration and agree to
    stop there, rank 0 saves it and says how to resume, all leave the
    process group and exit, none with a traceback (the job ends, no hang).
    Rank 0 exits with SIGTERM's status, the others with 0, so that torchrun
    reports the stop once."""
    work_dir = tmp_path / 'wd'
    # PET_TEE=3 (torchrun --tee 3): each rank's lines carry its prefix,
    # "[default1]:".
    ended = kill_rank_mid_training([
        'tools/dist_train.sh', DEMO, 2, '--work-dir', work_dir, *quick(
            tiny_demo_data, **{
                'train_cfg.max_iters': 10000,
                'train_dataloader.batch_size': 1,
                'default_hooks.logger.interval': 1
            })
    ],
                                   env=dict(launcher_env, PET_TEE='3'),
                                   rank_variable='RANK',
                                   signum=signal.SIGTERM)
    log = ended['log']
    assert ended['returncode'] not in (0, None), log[-3000:]
    assert ended['seconds'] < 60
    ranks = {0: [], 1: []}
    for line in log.splitlines():
        prefix = re.match(r'\[(?:default|rank)(\d)\]:', line)
        if prefix:
            ranks[int(prefix[1])].append(line[prefix.end():])
    assert not any('Traceback' in line for line in ranks[0] + ranks[1]), log
    assert 'SIGTERM (preemption, the time limit or a kill): the run stops ' \
        'at the end of this iteration, with a checkpoint' in ranks[1], log
    # torchrun's summary of the ranks that ended other than with 0: rank 0,
    # with SIGTERM's status; rank 1 ends with 0 (not listed), unless it was
    # still leaving when torchrun, seeing rank 0's end, closed it.
    exits = {
        int(rank): (int(code), pid)
        for rank, code, pid in re.findall(
            r'rank +: (\d+) \(local_rank: \d+\)\s+exitcode +: (-?\d+) '
            r'\(pid: (\d+)\)', log)
    }
    assert exits[0][0] == 143, log[-3000:]
    if 1 in exits:
        assert exits[1][0] == -signal.SIGTERM and \
            f'Sending process {exits[1][1]} closing signal SIGTERM' in log, \
            log[-3000:]
    stop = re.search(
        r'training stopped by SIGTERM \(preemption, the time limit or a '
        r'kill\) after iteration (\d+): saved (\S+); resume with: the same '
        'launch command with --resume added', '\n'.join(ranks[0]))
    assert stop, log[-3000:]
    assert stop[2] == str(work_dir / f'iter_{stop[1]}.pth')
    assert (work_dir / 'last_checkpoint').read_text() == stop[2]
    saved = torch.load(stop[2], weights_only=True)
    assert saved['meta']['iter'] == int(stop[1])


def test_forcing_nccl_on_a_cpu_machine_fails_in_one_line(
        run_script, launcher_env, backend, tiny_demo_data, quick, tmp_path):
    if backend == 'nccl':
        pytest.skip('this machine has the GPUs for nccl')
    result = run_script(
        'dist_train.sh',
        DEMO,
        1,  # one process refuses as two would
        '--work-dir',
        tmp_path / 'wd',
        '--dist-backend',
        'nccl',
        *quick(tiny_demo_data),
        env=launcher_env)
    assert result.returncode != 0
    assert 'error: --dist-backend nccl needs a CUDA GPU' in result.stderr
    assert not (tmp_path / 'wd').exists()

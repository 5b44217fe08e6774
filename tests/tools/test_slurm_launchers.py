# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/slurm_train.sh and tools/slurm_test.sh on a real Slurm cluster.

On the one-node cluster that the ``slurm`` fixture starts (conftest.py);
without root and Debian's packages the tests skip and say why. The jobs are
CPU processes (``GRES=none``) over gloo.
"""
import json

import pytest
import torch

DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'

pytestmark = pytest.mark.slurm


def test_slurm_train_then_slurm_test(run_script, run_tool, slurm_env,
                                     tiny_demo_data, quick, tmp_path):
    work_dir = tmp_path / 'train'
    options = quick(
        tiny_demo_data, **{
            'train_cfg.max_iters': 4,
            'default_hooks.logger.interval': 1,
            'train_dataloader.batch_size': 1,
            'default_hooks.checkpoint.interval': 4,
            'model.test_cfg.rcnn.score_thr': 0.0,
        })
    train = run_script(
        'slurm_train.sh',
        slurm_env['PARTITION'],
        'r2-train',
        DEMO,
        work_dir,
        *options,
        env=slurm_env)
    log = train.stdout + train.stderr
    assert train.returncode == 0, log[-3000:]
    assert 'Distributed launcher: slurm' in log
    assert "'backend': 'gloo'" in log
    assert 'Iter(train) [4/4]' in log
    checkpoint = work_dir / 'iter_4.pth'
    assert (work_dir / 'last_checkpoint').read_text().strip() == \
        str(checkpoint)
    saved = torch.load(checkpoint, weights_only=True)
    assert saved['meta']['iter'] == 4

    test = run_script(
        'slurm_test.sh',
        slurm_env['PARTITION'],
        'r2-test',
        DEMO,
        checkpoint,
        '--work-dir',
        tmp_path / 'test',
        *options,
        env=slurm_env)
    assert test.returncode == 0, (test.stdout + test.stderr)[-3000:]
    report = json.loads((tmp_path / 'test' / 'metrics.json').read_text())
    assert report['checkpoint'] == str(checkpoint)
    assert report['config'] == DEMO

    # The same AP as one process on the same checkpoint.
    single = run_tool(
        'test.py',
        DEMO,
        checkpoint,
        '--work-dir',
        tmp_path / 'single',
        *options,
        env={
            'OMP_NUM_THREADS': '1',
            'CUDA_VISIBLE_DEVICES': ''
        })
    assert single.returncode == 0, single.stderr[-3000:]
    expected = json.loads((tmp_path / 'single' / 'metrics.json').read_text())
    assert 'coco/bbox_mAP' in report['metrics']
    assert report['metrics'] == expected['metrics']


def test_a_dead_task_ends_the_slurm_job(kill_rank_mid_training, slurm_env,
                                        tiny_demo_data, quick, tmp_path):
    """--kill-on-bad-exit=1: SIGKILL one task and srun ends the rest."""
    ended = kill_rank_mid_training([
        'tools/slurm_train.sh', slurm_env['PARTITION'], 'r2-dead-rank', DEMO,
        tmp_path / 'wd', *quick(
            tiny_demo_data, **{
                'train_cfg.max_iters': 10000,
                'train_dataloader.batch_size': 1,
                'default_hooks.logger.interval': 1
            })
    ],
                                   env=slurm_env,
                                   rank_variable='SLURM_PROCID')
    assert ended['returncode'] not in (0, None), ended['log'][-3000:]
    assert ended['seconds'] < 60

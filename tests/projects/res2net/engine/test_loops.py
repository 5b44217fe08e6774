# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/engine/loops.py: an epoch-based run stopped mid-epoch
resumes exactly (a toy run in-process: tests/projects/res2net/engine/
conftest.py; the detector's, through the tools, in tests/tools/)."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from projects.res2net.engine.logs import (SCALARS_JSON, read_scalars, run_dirs,
                                          scalars_path)
from projects.res2net.engine.loops import use_resumable_loop
from projects.res2net.engine.preemption import TrainingStopped
from projects.res2net.errors import UserError


def _losses(work_dir: Path) -> dict:
    """The logged loss of each iteration, over the work dir's runs."""
    return {
        entry['iter']: entry['loss']
        for run in run_dirs(str(work_dir), SCALARS_JSON)
        for entry in read_scalars(scalars_path(run), fix='')
    }


def _stop(toy_runner, work_dir: Path, at: int, **setup) -> TrainingStopped:
    with pytest.raises(TrainingStopped) as stopped:
        toy_runner(work_dir, signal_at=at, **setup).train()
    return stopped.value


def _same_weights(runner, expected: dict) -> bool:
    weights = runner.model.state_dict()
    return all(
        torch.equal(weights[key], value) for key, value in expected.items())


def test_a_run_stopped_mid_epoch_resumes_exactly(toy_runner, tmp_path, capsys):
    straight = toy_runner(tmp_path / 'straight')
    straight.train()
    expected = straight.model.state_dict()

    # SIGTERM while iteration 6 (the 2nd of epoch 2) runs: it ends, and
    # the run stops there with a checkpoint of that position.
    stop = _stop(toy_runner, tmp_path / 'stopped', 5)
    checkpoint = tmp_path / 'stopped' / 'iter_6.pth'
    assert (stop.iteration, stop.checkpoint) == (6, str(checkpoint))
    assert (tmp_path / 'stopped' /
            'last_checkpoint').read_text() == str(checkpoint)
    meta = torch.load(checkpoint, weights_only=False)['meta']
    assert (meta['epoch'], meta['iter']) == (1, 6)
    assert not (tmp_path / 'stopped' / 'epoch_2.pth').exists()

    resumed = toy_runner(tmp_path / 'stopped', resume=checkpoint)
    resumed.train()
    assert 'resuming in epoch 2 after 2 of its 4 iterations' in \
        capsys.readouterr().out
    weights = resumed.model.state_dict()
    for key, value in expected.items():
        assert torch.equal(weights[key], value), key
    assert _losses(tmp_path / 'stopped') == _losses(tmp_path / 'straight')
    assert len(_losses(tmp_path / 'straight')) == 12

    # mmengine's own loop trains the resumed epoch from its first batch.
    plain = toy_runner(
        tmp_path / 'stopped', resume=checkpoint, loop='EpochBasedTrainLoop')
    plain.train()
    assert plain.iter == 14
    assert not torch.equal(plain.model.state_dict()['fc.weight'],
                           expected['fc.weight'])


def test_persistent_workers_resume_exactly_with_a_stream_per_sample(
        toy_runner, tmp_path, capsys):
    """mmdet's COCO loader settings (workers that persist across epochs),
    with a random stream per sample as tools/train.py sets: a run resumed
    from an epoch's checkpoint, or stopped mid-epoch and resumed with no
    workers at all, ends as the run never stopped."""
    coco = dict(num_workers=2, persistent_workers=True, streams=True)
    straight = toy_runner(tmp_path / 'straight', **coco)
    straight.train()
    expected = straight.model.state_dict()
    epoch_1 = tmp_path / 'straight' / 'epoch_1.pth'

    # As after a SIGKILL in epoch 2: resumed from epoch 1's checkpoint.
    resumed = toy_runner(tmp_path / 'killed', resume=epoch_1, **coco)
    resumed.train()
    assert _same_weights(resumed, expected)
    assert 'this resume is not exact' not in capsys.readouterr().out

    stop = _stop(toy_runner, tmp_path / 'stopped', 5, **coco)
    resumed = toy_runner(
        tmp_path / 'stopped',
        resume=stop.checkpoint,
        num_workers=0,
        streams=True)
    resumed.train()
    assert _same_weights(resumed, expected)
    assert _losses(tmp_path / 'stopped') == _losses(tmp_path / 'straight')

    # Without the streams the workers' generators restart at the resume,
    # the run takes another course, and the log says why.
    plain = dict(coco, streams=False)
    straight = toy_runner(tmp_path / 'plain', **plain)
    straight.train()
    resumed = toy_runner(
        tmp_path / 'plain_resumed',
        resume=tmp_path / 'plain' / 'epoch_1.pth',
        **plain)
    resumed.train()
    assert not _same_weights(resumed, straight.model.state_dict())
    assert 'this resume is not exact: the augmentations drawn in ' \
        'persistent loader workers' in capsys.readouterr().out


def test_a_position_outside_the_epoch_is_refused(toy_runner, tmp_path):
    stop = _stop(toy_runner, tmp_path, 5)
    # Batches of 4: epochs of 2 iterations; iteration 6 is not in epoch 2.
    with pytest.raises(
            UserError,
            match='the checkpoint stands at iteration 6'
            ' in epoch 2, outside that epoch\'s 2 iterations: '
            'resume with the batch size and number of GPUs'):
        toy_runner(tmp_path, resume=stop.checkpoint, batch_size=4).train()


@pytest.mark.parametrize('loop, expected', [
    (dict(type='EpochBasedTrainLoop', max_epochs=2),
     dict(type='ResumableEpochBasedTrainLoop', max_epochs=2)),
    (dict(by_epoch=True, max_epochs=2),
     dict(type='ResumableEpochBasedTrainLoop', max_epochs=2)),
    (dict(type='IterBasedTrainLoop',
          max_iters=9), dict(type='IterBasedTrainLoop', max_iters=9)),
    (dict(by_epoch=False, max_iters=9), dict(by_epoch=False, max_iters=9)),
])
def test_epoch_based_configs_run_the_resumable_loop(loop, expected):
    cfg = Config(dict(train_cfg=loop))
    use_resumable_loop(cfg)
    assert cfg.train_cfg == expected
    use_resumable_loop(Config())  # a config without training: unchanged

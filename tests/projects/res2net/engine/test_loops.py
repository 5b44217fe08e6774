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


def _stop(toy_runner, work_dir: Path, at: int) -> TrainingStopped:
    with pytest.raises(TrainingStopped) as stopped:
        toy_runner(work_dir, signal_at=at).train()
    return stopped.value


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

# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Training curves and times from the logs that training writes."""

import pytest

from projects.res2net.analysis.curves import (Run, check_eval_interval,
                                              from_epoch, load_records,
                                              load_runs, resolve_key, series,
                                              train_time)
from projects.res2net.errors import UserError


def test_validation_is_placed_after_its_training_iterations(
        tmp_path, write_log):
    run = load_runs([str(write_log(tmp_path / 'wd'))])[0]
    assert run.name == 'wd'
    key = resolve_key('bbox_mAP', run)
    assert key == 'coco/bbox_mAP'
    assert series(run, key) == ([50, 100], [0.1, 0.2])
    assert series(run, 'loss')[0] == list(range(10, 110, 10))


def test_runs_of_one_work_dir_are_named_by_their_timestamps(
        tmp_path, write_log):
    write_log(tmp_path / 'wd', '20240101_000000')
    write_log(tmp_path / 'wd', '20240102_000000')
    (tmp_path / 'wd' / '20240103_000000').mkdir()  # a test run: no scalars
    names = [
        run.name for run in load_runs(
            [str(tmp_path / 'wd'),
             str(tmp_path / 'wd' / '20240101_000000')])
    ]
    assert names == ['wd/20240102_000000', 'wd/20240101_000000']


def test_a_line_being_written_is_skipped(tmp_path, write_log):
    path = write_log(tmp_path / 'wd')
    with open(path, 'a') as f:
        f.write('{"lr": 0.01, "lo')
    assert len(load_records(str(path))) == 12


def test_train_time_leaves_the_warm_up_out():
    lines = [
        dict(lr=0.01, loss=1.0, time=t, step=s)
        for s, t in ((10, 5.0), (20, 1.0), (30, 3.0))
    ]
    # A validation logged at step=epoch is no training window.
    lines.append({'coco/bbox_mAP': 0.2, 'time': 9.0, 'step': 0})
    run = Run('wd', 'scalars.json', lines)
    timing = train_time(run)
    assert timing.slowest == (30, 3.0) and timing.fastest == (20, 1.0)
    assert timing.mean == 2.0 and timing.std == 1.0
    assert timing.iterations == 30 and timing.total_s == 60.0
    timing = train_time(run, include_outliers=True)
    assert timing.slowest == (10, 5.0) and timing.mean == 3.0
    with pytest.raises(UserError, match='no training times in scalars.json'):
        train_time(Run('wd', 'scalars.json', [dict(loss=1.0, step=10)]))


def _epochs_run():
    """Epochs 1-3, two windows each (the first 3 s, the second the epoch),
    validated after epoch 2 (logged with step=epoch)."""
    lines = []
    for epoch in (1, 2, 3):
        lines += [
            dict(loss=1.0, time=time, epoch=epoch, step=20 * epoch + step)
            for step, time in ((-10, 3.0), (0, float(epoch)))
        ]
        if epoch == 2:
            lines.append({'coco/bbox_mAP': 0.5, 'step': 2})
    return Run('wd', 'scalars.json', lines)


def test_an_epoch_based_run_as_mmdet_takes_it():
    run = _epochs_run()
    # cal_train_time: each epoch's first window is left out.
    timing = train_time(run)
    assert timing.epochs == ((1, 1.0), (2, 2.0), (3, 3.0))
    assert timing.mean == 2.0 and timing.fastest == (20, 1.0)
    assert (timing.slowest_epoch, timing.fastest_epoch) == ((3, 3.0), (1, 1.0))
    assert train_time(run, include_outliers=True).epochs[0] == (1, 2.0)
    # --start-epoch 2: from epoch 2's first window on, its validation kept.
    kept = from_epoch(run, 2).records
    assert kept[0] == run.records[2] and len(kept) == 5
    with pytest.raises(UserError, match='ends in epoch 3'):
        from_epoch(run, 4)
    # --eval-interval: the metric is logged in epoch 2, the loss in every.
    check_eval_interval([run], ['bbox_mAP', 'loss'], 2)
    with pytest.raises(UserError, match='bbox_mAP in epochs 2, not in epoch'):
        check_eval_interval([run], ['bbox_mAP'], 1)


def test_an_iteration_based_run_has_one_epoch_to_mmdet(tmp_path, write_log):
    run = load_runs([str(write_log(tmp_path / 'wd'))])[0]
    check_eval_interval([run], ['bbox_mAP'], 1)
    with pytest.raises(UserError, match='iteration-based run'):
        check_eval_interval([run], ['bbox_mAP'], 2)
    with pytest.raises(UserError, match='iteration-based run'):
        from_epoch(run, 2)
    assert from_epoch(run, 1) is run

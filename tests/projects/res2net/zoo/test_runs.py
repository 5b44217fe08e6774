# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/zoo/runs.py: a model-zoo run's steps and progress."""
import json

import pytest

from projects.res2net.errors import UserError
from projects.res2net.zoo.runs import (BENCHMARK, TEST, TRAIN, progress, steps,
                                       zoo_run)

FASTER = 'configs/faster_rcnn_r2_101_fpn_2x.py'


@pytest.fixture
def run(tmp_path):
    run, _ = zoo_run(FASTER, str(tmp_path), ['train_cfg.max_epochs=2'],
                     ['--num-images', '4'])
    return run


def test_the_steps_of_a_run(run, tmp_path):
    work_dir = str(tmp_path / 'faster_rcnn_r2_101_fpn_2x')
    assert run.work_dir == work_dir
    assert run.checkpoint == f'{work_dir}/epoch_2.pth'
    train, test, bench = steps(run)
    options = ('--cfg-options', 'train_cfg.max_epochs=2')
    assert (train.tool, train.distributed) == (TRAIN, True)
    assert train.args == (FASTER, '--work-dir', work_dir, '--resume', *options)
    assert (test.tool, test.distributed) == (TEST, True)
    assert test.args == (FASTER, run.checkpoint, '--work-dir', work_dir,
                         *options)
    assert (bench.tool, bench.distributed) == (BENCHMARK, False)
    assert bench.args == (FASTER, run.checkpoint, '--work-dir', work_dir,
                          '--num-images', '4', *options)


def test_an_iteration_based_schedule_ends_with_its_iteration(tmp_path):
    run, _ = zoo_run('configs/demo/faster_rcnn_r2_50_fpn_demo.py',
                     str(tmp_path))
    assert run.checkpoint.endswith('/iter_400.pth')


def steps_left(run):
    return steps(run)[progress(run).done:]


def _write(path, **content):
    path.write_text(json.dumps(content))


def test_progress_is_read_from_the_work_dir(run, tmp_path):
    work_dir = tmp_path / 'faster_rcnn_r2_101_fpn_2x'
    assert progress(run).done == 0
    assert progress(run).describe() == 'not started'
    assert len(steps_left(run)) == 3

    work_dir.mkdir()
    (work_dir / 'epoch_1.pth').write_bytes(b'')
    cut = progress(run)
    assert (cut.done, cut.resume_from) == (0, str(work_dir / 'epoch_1.pth'))
    assert cut.describe() == 'cut off in training, after epoch_1.pth'
    assert [s.tool for s in steps_left(run)] == [TRAIN, TEST, BENCHMARK]

    (work_dir / 'epoch_2.pth').write_bytes(b'')
    assert progress(run).describe() == 'trained, not tested'
    # A test of another checkpoint does not count.
    _write(work_dir / 'metrics.json', checkpoint=str(work_dir / 'epoch_1.pth'))
    assert [s.tool for s in steps_left(run)] == [TEST, BENCHMARK]

    _write(work_dir / 'metrics.json', checkpoint=run.checkpoint)
    assert progress(run).describe() == 'trained and tested, not benchmarked'
    (work_dir / 'benchmark.json').write_text('{damaged')
    assert [s.tool for s in steps_left(run)] == [BENCHMARK]

    _write(work_dir / 'benchmark.json', checkpoint=run.checkpoint)
    assert progress(run).finished
    assert steps_left(run) == []


def test_a_bad_option_is_one_line(tmp_path):
    with pytest.raises(
            UserError, match='--cfg-options train_cfg: not '
            'key=value'):
        zoo_run(FASTER, str(tmp_path), ['train_cfg'])

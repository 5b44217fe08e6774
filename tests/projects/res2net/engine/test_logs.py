# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Finding and reading mmengine's scalars.json."""
import json

import pytest

from projects.res2net.engine.logs import (find_scalars, read_scalars, run_dirs,
                                          scalars_path)
from projects.res2net.errors import UserError

FIX = 'do this'


def write(path, *lines):
    path.write_text(''.join(line + '\n' for line in lines))
    return str(path)


def test_records_in_order_and_a_line_being_written_is_skipped(tmp_path):
    records = [dict(loss=1.0, step=10), {'coco/bbox_mAP': 0.5, 'step': 1}]
    path = write(tmp_path / 'scalars.json', *map(json.dumps, records), '',
                 '{"loss": 0.9, "st')
    assert read_scalars(path, fix=FIX) == records
    assert read_scalars(write(tmp_path / 'empty.json'), fix=FIX) == []


@pytest.mark.parametrize('bad, message', [
    ('{"loss": 1.0, "st', 'line 1: not JSON'),
    ('[1, 2]', 'line 1: not a dict with a "step"'),
    ('{"loss": 1.0}', 'line 1: not a dict with a "step"'),
])
def test_a_damaged_line_names_itself_and_the_fix(tmp_path, bad, message):
    path = write(tmp_path / 'scalars.json', bad, json.dumps(dict(step=1)))
    with pytest.raises(UserError) as info:
        read_scalars(path, fix=FIX)
    assert str(info.value).startswith(f'{path}, {message}')
    assert str(info.value).endswith(f'; {FIX}')


def run_dir(work_dir, stamp, *files):
    """A ``<timestamp>`` dir of the Runner with ``files`` in its
    ``vis_data/``."""
    vis_data = work_dir / stamp / 'vis_data'
    vis_data.mkdir(parents=True)
    for name in files:
        (vis_data / name).write_text('{"step": 1}\n')
    return work_dir / stamp


def test_runs_oldest_first_that_hold_the_file(tmp_path):
    newer = run_dir(tmp_path, '20240102_000000', 'config.py', 'scalars.json')
    older = run_dir(tmp_path, '20240101_000000', 'config.py', 'scalars.json')
    tested = run_dir(tmp_path, '20240103_000000', 'config.py')  # a test run
    run_dir(tmp_path, 'backup', 'config.py')  # not named as the Runner does
    (tmp_path / '20240104_000000').mkdir()  # no vis_data
    assert run_dirs(str(tmp_path),
                    'config.py') == [str(older),
                                     str(newer),
                                     str(tested)]
    assert run_dirs(str(tmp_path), 'scalars.json') == [str(older), str(newer)]
    assert scalars_path(str(older)) == str(older / 'vis_data' / 'scalars.json')
    assert run_dirs(str(tmp_path / 'nope'), 'config.py') == []


def test_a_work_dir_means_its_newest_run(tmp_path):
    run_dir(tmp_path / 'wd', '20240101_000000', 'scalars.json')
    newest = run_dir(tmp_path / 'wd', '20240102_000000', 'scalars.json')
    (tmp_path / 'wd' / '20240103_000000').mkdir()  # a test run: no scalars
    file = str(newest / 'vis_data' / 'scalars.json')
    assert find_scalars(str(tmp_path / 'wd'), fix=FIX) == file
    assert find_scalars(str(newest), fix=FIX) == file
    assert find_scalars(file, fix=FIX) == file


def test_no_log_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(UserError) as info:
        find_scalars(str(tmp_path / 'nope'), fix=FIX)
    assert str(info.value) == f'log not found: {tmp_path / "nope"}; {FIX}'
    (tmp_path / '20240101_000000').mkdir()  # a test run's: no scalars
    with pytest.raises(UserError) as info:
        find_scalars(str(tmp_path), fix=FIX)
    assert str(info.value) == (f'no vis_data/scalars.json under {tmp_path} '
                               f'(a test run writes none); {FIX}')

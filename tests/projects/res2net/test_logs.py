# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Reading mmengine's scalars.json."""
import json

import pytest

from projects.res2net.errors import UserError
from projects.res2net.logs import read_scalars

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

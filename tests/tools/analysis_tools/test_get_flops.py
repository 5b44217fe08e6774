# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/analysis_tools/get_flops.py: the table, the JSON, checks.

The count against mmdet's model zoo is tested with the module,
``projects/res2net/analysis/flops.py``.
"""
import json
import re
from typing import Dict, Tuple

import pytest

from projects.res2net.analysis.flops import count_flops
from projects.res2net.engine.cli import build_detector, load_config

TOOL = 'analysis_tools/get_flops.py'
DEMO_CONFIG = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'
ROW = re.compile(r'^\| (\w+) \| (\S+) \| ([\d.]+) \| ([\d.]+) \|$', re.M)


def _rows(stdout: str) -> Dict[str, Tuple[str, float, float]]:
    return {
        part: (shape, float(params), float(flops))
        for part, shape, params, flops in ROW.findall(stdout)
    }


def test_demo_table_and_json(call_tool, repo, tmp_path):
    out = tmp_path / 'flops.json'
    result = call_tool(TOOL, DEMO_CONFIG, '--shape', 128, '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data['config'] == DEMO_CONFIG
    assert data['input_shape'] == [1, 3, 128, 128]
    # The demo config's RPN keeps 300 proposals (mmdet's: 1000).
    assert data['num_proposals'] == 300
    assert 'RoI head counted on 300 proposals' in result.stdout
    assert 'one multiply-add is one FLOP' in data['convention']
    assert 'one multiply-add is one FLOP' in result.stdout
    det, backbone = data['detector'], data['backbone']

    # The printed table shows the JSON's numbers.
    rows = _rows(result.stdout)
    assert set(rows) == {'detector', 'backbone'}
    for part, counts in (('detector', det), ('backbone', backbone)):
        shape, params_m, flops_g = rows[part]
        assert shape == '1x3x128x128'
        assert params_m == pytest.approx(counts['params'] / 1e6, abs=1e-3)
        assert flops_g == pytest.approx(counts['flops'] / 1e9, abs=1e-3)

    # Params: every parameter of the model, counted here independently.
    model = build_detector(load_config(str(repo / DEMO_CONFIG)))
    assert det['params'] == sum(p.numel() for p in model.parameters())
    assert backbone['params'] == sum(p.numel()
                                     for p in model.backbone.parameters())

    # FLOPs: the detector's exceed the backbone's by the RoI box head's
    # fully connected layers on 300 RoIs (shared 2fc: 128x7x7 -> 1024 ->
    # 1024, then 81 class scores and 80x4 box deltas) plus the FPN and the
    # RPN head, which at 128x128 are small.
    box_head = 300 * (128 * 7 * 7 * 1024 + 1024 * 1024 + 1024 * (81 + 320))
    rest = det['flops'] - box_head - backbone['flops']
    assert 0 < backbone['flops'] and 0 < rest < 0.2 * det['flops']


@pytest.mark.parametrize('args, message', [
    (['configs/no_such_config.py'], 'error: config file not found: '
     'configs/no_such_config.py'),
    ([DEMO_CONFIG, '--shape', '1', '2', '3'
      ], 'error: --shape 1 2 3: give H W'),
])
def test_bad_input_is_one_line(call_tool, args, message):
    result = call_tool(TOOL, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ''


def test_mmdets_flags_count_alike(call_tool, repo, tiny_demo_data, tmp_path):
    """mmdet's docs' --shape (one number) and mmdet 3.3's --num-images (the
    validation images): the demo's are 128x128, so the count on one is the
    fake 128x128 image's. (The mean over several: test_flops.py.)"""
    out = tmp_path / 'flops.json'
    result = call_tool(TOOL, DEMO_CONFIG, '--num-images', 1, '--cfg-options',
                       f'data_root={tiny_demo_data}/', '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    fake = count_flops(load_config(str(repo / DEMO_CONFIG)), 128, 128)
    assert data['source'] == 'val_dataloader' and data['num_images'] == 1
    assert data['input_shapes'] == [[1, 3, 128, 128]]
    assert data['input_shape'] == fake['input_shape'] == [1, 3, 128, 128]
    assert data['detector'] == fake['detector']
    assert data['backbone'] == fake['backbone']
    assert data['num_proposals'] == [300]
    assert 'FLOPs: the mean over 1 images of val_dataloader (padded to ' \
        '1x3x128x128)\n' in result.stdout
    assert 'RoI head counted on 300 proposals' in result.stdout
    rows = _rows(result.stdout)
    assert rows['detector'] == ('1x3x128x128',
                                round(fake['detector']['params'] / 1e6, 3),
                                round(fake['detector']['flops'] / 1e9, 3))


@pytest.mark.parametrize('args, message', [
    (['--shape', 128, '--num-images', 2], 'error: --shape and --num-images'),
    (['--num-images', 0], 'error: --num-images 0: count on at least one'),
    (['--num-images', 2, '--cfg-options', 'data_root=/no/such/dir/'
      ], "error: val_dataloader (data_root='/no/such/dir/'): annotation file "
     'not found'),
])
def test_mmdets_flags_bad_input_is_one_line(call_tool, args, message):
    result = call_tool(TOOL, DEMO_CONFIG, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ''

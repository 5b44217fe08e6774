# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/analysis_tools/check_mmdet_families.py on two families: one that
passes with both backbones, one whose control fails on a CPU already.

The full table (every family, about half an hour) is run by hand; its
output is in docs/families.md."""
import json

TOOL = 'analysis_tools/check_mmdet_families.py'


def test_a_passing_and_a_control_failing_family(call_tool, tmp_path):
    out = tmp_path / 'families.json'
    result = call_tool(TOOL, '--families', 'atss', 'carafe', '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r['family']: r for r in json.loads(out.read_text())['rows']}
    assert rows['atss']['config'] == 'atss/atss_r50_fpn_1x_coco.py'
    assert (rows['atss']['control'], rows['atss']['res2net']) == ('pass',
                                                                  'pass')
    # CARAFE's upsampling op is CUDA-only: outside the backbone.
    assert rows['carafe']['control'] == rows['carafe']['res2net'] == 'fail'
    assert rows['carafe']['control_reason'] == rows['carafe']['res2net_reason']
    lines = result.stdout.splitlines()
    assert '| family | config | control | Res2Net | reason | seconds |' in \
        lines
    assert any(
        line.startswith('| atss | `atss_r50_fpn_1x_coco.py` | pass | pass |')
        for line in lines)
    assert ('2 families: 1 pass with Res2Net as with ResNet; 0 fail with '
            'Res2Net only; 1 fail already with ResNet-50') in lines
    assert 'mmdet 3.3.0' in lines[0]


def test_an_unknown_family_is_one_line(call_tool):
    result = call_tool(TOOL, '--families', 'nope')
    assert result.returncode == 2
    assert result.stderr.startswith('error: no family nope in ')

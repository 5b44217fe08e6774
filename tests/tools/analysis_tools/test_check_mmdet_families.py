# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/analysis_tools/check_mmdet_families.py on two families: one that
passes with both backbones, one whose control fails on a CPU already; its
failure exit on rows where Res2Net alone fails.

The full table (every family, about half an hour) is run by hand; its
output is in docs/families.md."""
import json

from projects.res2net.zoo import families

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


def test_a_family_failing_with_res2net_only_fails_the_tool(
        call_tool, monkeypatch, tmp_path):
    """Exit status 1, and the Res2Net traceback of each such family on
    stderr (not in the JSON). The rows are made up: a family that passes
    with ResNet-50 and fails with Res2Net is what the table looks for, and
    mmdet ships none."""

    def checked(root, items, *, variant, timeout):
        assert [i.family for i in items] == ['atss', 'retinanet']
        for item, res2net in zip(items, ('pass', 'fail')):
            failed = res2net == 'fail'
            yield dict(
                family=item.family,
                config=item.config,
                control='pass',
                res2net=res2net,
                control_reason='',
                res2net_reason='ValueError: no' if failed else '',
                seconds=1.0,
                **({
                    'res2net_traceback': 'Traceback: ...\nValueError: no\n'
                } if failed else {}))

    monkeypatch.setattr(families, 'check_families', checked)
    out = tmp_path / 'families.json'
    result = call_tool(TOOL, '--families', 'atss', 'retinanet', '--out', out)
    assert result.returncode == 1, result.stderr[-3000:]
    assert 'retinanet: Traceback: ...\nValueError: no\n' in result.stderr
    assert 'atss' not in result.stderr
    assert ('2 families: 1 pass with Res2Net as with ResNet; 1 fail with '
            'Res2Net only; 0 fail already with ResNet-50'
            ) in result.stdout.splitlines()
    rows = json.loads(out.read_text())['rows']
    assert [(r['family'], r['res2net'])
            for r in rows] == [('atss', 'pass'), ('retinanet', 'fail')]
    assert not any('traceback' in key for row in rows for key in row)

# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/deployment/quantize.py: bad input is one line and writes nothing.

The program it writes is tested through test.py in
tests/tools/test_train_test.py (the AP of the int8 form)."""
import pytest

TOOL = 'deployment/quantize.py'
DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'


@pytest.mark.parametrize('args, message', [
    (['missing.pth'], 'error: checkpoint not found: missing.pth; pass the '
     '.pth that tools/train.py wrote for this config'),
    (['{checkpoint}', '--calib-images', '0'],
     'error: --calib-images 0: calibrate on at least 1 image (default 32)'),
])
def test_bad_input_is_one_line_and_writes_nothing(call_tool, tiny_demo_data,
                                                  quick, tmp_path, args,
                                                  message):
    checkpoint = tmp_path / 'weights.pth'
    checkpoint.write_bytes(b'')
    out = tmp_path / 'program.pt2'
    args = [a.format(checkpoint=checkpoint) for a in args]
    result = call_tool(TOOL, DEMO, *args, '--out', out, *quick(tiny_demo_data))
    assert result.returncode == 2
    assert result.stderr.strip() == message
    assert sorted(p.name for p in tmp_path.iterdir()) == ['weights.pth']

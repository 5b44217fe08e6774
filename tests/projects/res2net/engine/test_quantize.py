# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/engine/quantize.py: the precision flags that test.py and
benchmark.py share, checked before anything is built.

Writing a program is tested through its tool
(tests/tools/deployment/test_quantize.py and tests/tools/test_train_test.py).
"""
import argparse

import pytest
from mmengine.config import Config

from projects.res2net.engine.quantize import (add_precision_arguments,
                                              plan_precisions)
from projects.res2net.errors import UserError
from projects.res2net.models.precision import cpu_has


def _args(*argv: str, several: bool = True) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_precision_arguments(parser, several=several, what='time')
    return parser.parse_args(argv)


def _plan(*argv: str, several: bool = True, checkpoint=None, device='cpu'):
    return plan_precisions(
        _args(*argv, several=several),
        Config(dict(model=dict(type='FasterRCNN'))),
        device=device,
        checkpoint=checkpoint)


def test_each_precision_once_in_the_order_asked():
    assert _plan('--precision', 'int8', 'fp32', 'int8') == ['int8', 'fp32']
    assert _plan('--precision', 'int8', several=False) == ['int8']
    assert _plan(several=False) == ['fp32']
    assert _plan() == []


def test_bf16_without_its_instructions_runs_fp32_unless_forced(capsys):
    if cpu_has('bf16'):
        assert _plan('--precision', 'fp32', 'bf16') == ['fp32', 'bf16']
        return
    assert _plan('--precision', 'fp32', 'bf16') == ['fp32']
    assert 'running the fp32 form instead' in capsys.readouterr().out
    assert _plan('--precision', 'fp32', 'bf16',
                 '--force-precision') == ['fp32', 'bf16']


@pytest.mark.parametrize('argv, kwargs, message', [
    (('--int8-program', 'p.pt2'), {}, '--int8-program is for --precision '
     'int8'),
    (('--precision', 'int8', '--calib-images', '0'), {},
     '--calib-images 0: calibrate on at least 1 image'),
    (('--precision', 'int8', '--int8-program', 'p.pt2'), {},
     'p.pt2 was made from a checkpoint: pass that checkpoint'),
    (('--precision', 'int8', '--int8-program', 'p.pt2'),
     dict(checkpoint='missing.pth'), 'checkpoint not found: missing.pth'),
    (('--precision', 'bf16'), dict(device='cuda'),
     '--precision bf16 is a deploy form for x86 CPUs'),
])
def test_flags_that_cannot_run_stop_in_one_line(argv, kwargs, message):
    with pytest.raises(UserError, match=message):
        _plan(*argv, **kwargs)

# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/analysis/speed.py: the counterpart backbones.

The clock and the memory probes are tested through the speed tools."""
import pytest

from projects.res2net.analysis.speed import counterpart
from projects.res2net.errors import UserError

OURS = dict(
    type='Res2NetBackbone',
    depth=50,
    scales=4,
    base_width=26,
    stem_type='deep',
    avg_down=True,
    frozen_stages=1,
    norm_eval=True,
    init_cfg=dict(type='Pretrained', checkpoint='r2.pth'))


def test_counterparts_keep_the_shared_settings():
    assert counterpart(OURS, 'resnet') == dict(
        type='ResNet',
        init_cfg=None,
        depth=50,
        frozen_stages=1,
        norm_eval=True)
    assert counterpart(OURS, 'mmdet-res2net') == dict(
        type='Res2Net',
        scales=4,
        base_width=26,
        init_cfg=None,
        depth=50,
        frozen_stages=1,
        norm_eval=True)


@pytest.mark.parametrize('backbone, kind, message', [
    (dict(OURS, type='Res2NetDLA'), 'resnet', '--family dla'),
    (dict(OURS, type='ResNet'), 'resnet', 'nothing to compare it with'),
    (OURS, 'vgg', "no counterpart 'vgg'"),
])
def test_what_has_no_counterpart_says_why(backbone, kind, message):
    with pytest.raises(UserError, match=message):
        counterpart(backbone, kind)

# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The deploy form: BN folded, channels-last, compiled; the same outputs."""

import pytest
import torch
from mmcv.ops import RoIAlign
from mmdet.apis import inference_detector, init_detector
from mmdet.registry import MODELS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from projects.res2net.models.deploy import (compile_modules, deploy,
                                            fold_batch_norms, to_channels_last)

DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'
BACKBONES = {
    'ours': dict(type='Res2NetBackbone', depth=50),
    'mmdet': dict(type='Res2Net', depth=50, scales=4, base_width=26),
}


def relative_error(got, want) -> float:
    return max(((g - w).abs().max() / w.abs().max()).item()
               for g, w in zip(got, want))


def outputs(model: nn.Module, x: torch.Tensor):
    with torch.no_grad():
        return [o.contiguous() for o in model(x)]


@pytest.fixture
def backbone(request, randomise) -> nn.Module:
    """A randomised eval-mode Res2Net-50 (``ours`` or ``mmdet``'s): random
    BN statistics, so that folding changes every conv."""
    model = randomise(MODELS.build(BACKBONES[request.param]))
    model.eval()  # (mmdet's ResNet.train returns None)
    return model


@pytest.mark.parametrize('backbone', list(BACKBONES), indirect=True)
def test_folding_keeps_the_outputs(backbone):
    """Every BN is folded, the split convs' parallel lists included."""
    x = torch.rand(2, 3, 64, 96)
    want = outputs(backbone, x)
    norms = sum(isinstance(m, _BatchNorm) for m in backbone.modules())
    assert fold_batch_norms(backbone) == (norms, 0)
    assert not any(isinstance(m, _BatchNorm) for m in backbone.modules())
    assert all(isinstance(bn, nn.Identity) for bn in backbone.layer2[0].bns)
    assert relative_error(outputs(backbone, x), want) <= 1e-5


@pytest.mark.parametrize('backbone', ['ours'], indirect=True)
def test_folding_needs_eval_mode(backbone):
    with pytest.raises(ValueError, match='eval mode'):
        backbone.train()
        fold_batch_norms(backbone)


@pytest.mark.parametrize('backbone', ['ours'], indirect=True)
def test_deploy_form_state_dict_and_outputs(backbone):
    """Folding drops the BNs' entries and gives each of their convs a bias;
    every other entry stays, with its shape. channels-last alone changes
    no entry, and the outputs stay within 1e-4 (the issue's bound)."""
    x = torch.rand(1, 3, 64, 64)
    want = outputs(backbone, x)
    before = backbone.state_dict()
    norm_names = {
        name
        for name, m in backbone.named_modules() if isinstance(m, _BatchNorm)
    }
    report = deploy(backbone)
    after = backbone.state_dict()
    dropped = {key.rsplit('.', 1)[0] for key in before.keys() - after.keys()}
    assert dropped == norm_names
    added = after.keys() - before.keys()
    assert added and all(key.endswith('.bias') for key in added)
    assert all(after[k].shape == before[k].shape
               for k in after.keys() & before.keys())
    assert (report.folded, report.left) == (len(norm_names), 0)
    assert backbone.layer1[0].conv1.weight.is_contiguous(
        memory_format=torch.channels_last)
    assert relative_error(outputs(backbone, x), want) <= 1e-4


def test_channels_last_keeps_mmcv_ops_in_nchw():
    """mmcv's RoIAlign reads NCHW only: its module stays so, and is handed
    a contiguous copy of a channels-last input."""
    model = nn.Module()
    model.conv = nn.Conv2d(3, 8, 3)
    model.roi = RoIAlign(output_size=2, spatial_scale=1.0, sampling_ratio=2)
    assert to_channels_last(model) == 1
    feats = torch.rand(1, 8, 16, 16)
    rois = torch.tensor([[0., 1., 1., 9., 9.]])
    want = RoIAlign(2, 1.0, 2)(feats, rois)
    got = model.roi(feats.contiguous(memory_format=torch.channels_last), rois)
    torch.testing.assert_close(got, want)


def test_compile_keeps_the_modules_and_their_keys():
    """The named parts are compiled in place (the model itself when it has
    none of them), their state-dict keys unchanged."""
    torch.manual_seed(0)
    model = nn.Module()
    model.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    model.head = nn.Linear(4, 2)
    keys = model.state_dict().keys()
    x = torch.rand(1, 3, 8, 8)
    want = model.backbone(x)
    assert compile_modules(model) == ('backbone', )
    assert model.state_dict().keys() == keys
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(x), want)
    assert compile_modules(model.head, options=dict(freezing=False)) == ('', )


@pytest.mark.slow
def test_deployed_detector_finds_the_same_objects(trained_demo):
    """The whole trained demo detector, deployed: features within 1e-4 and
    the same detections on validation images (boxes within 0.01 px)."""
    model = init_detector(DEMO, str(trained_demo.checkpoint), device='cpu')
    images = sorted((trained_demo.root / 'data' / 'val2017').glob('*.png'))[:4]
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        want_feats = model.extract_feat(x)
    want = inference_detector(model, [str(p) for p in images])

    report = deploy(model)
    assert report.folded > 0 and report.left == 0
    assert report.kept_nchw > 0  # the RoI extractor's RoIAlign layers
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    with torch.no_grad():
        assert relative_error(model.extract_feat(x), want_feats) <= 1e-4
    got = inference_detector(model, [str(p) for p in images])
    for a, b in zip(got, want):
        a, b = a.pred_instances, b.pred_instances
        keep = b.scores > 0.3
        assert keep.any()  # a trained model finds the objects
        assert torch.equal(a.labels[keep], b.labels[keep])
        torch.testing.assert_close(
            a.bboxes[keep], b.bboxes[keep], atol=1e-2, rtol=0)
        torch.testing.assert_close(
            a.scores[keep], b.scores[keep], atol=1e-4, rtol=0)


@pytest.mark.cuda
@pytest.mark.parametrize('backbone', ['ours'], indirect=True)
def test_deploy_on_cuda_keeps_the_outputs(backbone):
    """On a GPU too (TF32 off: it rounds to 1e-3 by design)."""
    model = backbone.cuda()
    x = torch.rand(2, 3, 128, 96, device='cuda')
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        want = outputs(model, x)
        deploy(model)
        got = outputs(model, x.contiguous(memory_format=torch.channels_last))
    assert relative_error(got, want) <= 1e-4

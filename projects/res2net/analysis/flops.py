# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Params and FLOPs of a detector and of its backbone at one input shape.

What ``tools/analysis_tools/get_flops.py`` counts: a thin layer over
mmengine's complexity analysis (its ``FlopAnalyzer``, the FLOP half of
``get_model_complexity_info``, and ``parameter_count``), counted the way
mmdet 3.x's ``tools/analysis_tools/get_flops.py`` counts a detector: the
model's forward in ``'tensor'`` mode (``_forward``: backbone, neck, RPN
with its proposal post-processing, the RoI heads' raw outputs) on one
preprocessed image. Here the image is a fake one of the given shape
(seeded noise), so no dataset is needed; the model's ``data_preprocessor``
normalises and pads it as it would a real one. The weights are random (no
``init_cfg`` is applied, nothing is downloaded), which does not change the
count. mmengine counts one multiply-add as one FLOP, as mmdet's model zoo
does, norms a few per element, and zero for adds, activations, max pooling
and mmcv's compiled ops (NMS, RoIAlign, deformable convolution): the
convention in docs/useful_tools.md. The backbone's share is read off the
same trace.

``--num-images N`` counts as mmdet 3.3's own ``get_flops.py`` does
instead: on the first N images of the config's ``val_dataloader`` at
batch 1, each at the size the test pipeline gives it (its real padded
shape), the detector's and backbone's FLOPs being the mean over the
images (:func:`count_flops_on_data`). mmdet's docs show ``--shape``
(mmdet 2.x's flag, which mmdet 3.3's tool no longer has); both are taken
here, one at a time.

Two-stage detectors: the RoI heads are counted on the proposals the RPN
keeps, which with random weights is ``test_cfg.rpn.max_per_img`` (1000 in
mmdet's configs, the number mmdet 2.x's ``forward_dummy`` used); the tool
prints the number.

Measured with this tool (CPU, torch 2.13, mmengine 0.10.7) at 1280x800
(``--shape 800 1280``; ``--shape 1280 800`` gives the same numbers):

=============================  ==========  =========  =============
model                          params (M)  FLOPs (G)  published (G)
=============================  ==========  =========  =============
Faster R-CNN R2-101-FPN        61.422      293.208    293.7
Faster R-CNN R-101-FPN         60.745      282.774    283.1
backbone Res2Net-v1b-101 26w4s 43.177      170.267
backbone ResNet-101            42.500      159.833
=============================  ==========  =========  =============

(R-101: ``_base_ = 'mmdet::faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py'``.)
(Published: the Res2Net authors' mmdetection, ``configs/res2net/README.md``,
293.68 and 283.14 at 1280x800.) The detector ratio R2-101 / R-101 is 1.0369
(published: 1.0372); the heads are the same, so the whole difference
(10.434 G; published 10.5) is the backbones'. One detector at this size
takes 45-50 s on 2 busy CPU cores, nearly all of it in the tracer.

Example:
    python tools/analysis_tools/get_flops.py \\
        configs/faster_rcnn_r2_101_fpn_2x.py
    python tools/analysis_tools/get_flops.py \\
        configs/demo/faster_rcnn_r2_50_fpn_demo.py --shape 128 --out f.json
    python tools/analysis_tools/get_flops.py \\
        configs/faster_rcnn_r2_101_fpn_2x.py --num-images 100
"""
from copy import deepcopy
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.structures import DetDataSample
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.config import Config
from mmengine.runner import Runner
from torch import Tensor, nn

from ..engine.cli import build_detector
from ..errors import UserError

CONVENTION = ('FLOPs as mmengine counts them: one multiply-add is one FLOP '
              "(as in mmdet's model zoo)")


def image_shape(shape: Sequence[int]) -> Tuple[int, int]:
    """``(H, W)`` from ``--shape``: ``H W`` or one side of a square.

    Raises:
        UserError: Not one or two positive numbers.
    """
    if len(shape) not in (1, 2) or min(shape) <= 0:
        raise UserError(f'--shape {" ".join(map(str, shape))}: give H W or '
                        'one number for a square, e.g. --shape 800 1280')
    return (shape[0], shape[-1])


def fake_batch(model: nn.Module, height: int,
               width: int) -> Tuple[Tensor, List[DetDataSample]]:
    """One noise image of ``height`` x ``width``, as the model's
    ``data_preprocessor`` hands it on (normalised, padded)."""
    gen = torch.Generator().manual_seed(0)
    image = torch.randint(
        0, 256, (3, height, width), dtype=torch.uint8, generator=gen)
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(height, width),
            ori_shape=(height, width),
            scale_factor=(1.0, 1.0)))
    data = model.data_preprocessor(
        dict(inputs=[image], data_samples=[sample]), False)
    return data['inputs'], data['data_samples']


class TensorMode(nn.Module):
    """A detector's forward in ``'tensor'`` mode with fixed data samples.

    mmdet's get_flops binds the samples to ``model.forward`` with
    ``functools.partial``; a wrapper leaves the model alone.
    """

    def __init__(self, detector: nn.Module,
                 data_samples: List[DetDataSample]) -> None:
        super().__init__()
        self.detector = detector
        self.data_samples = data_samples

    def forward(self, inputs: Tensor) -> Any:
        return self.detector(inputs, self.data_samples, mode='tensor')


def count_detector(detector: nn.Module, inputs: Tensor,
                   data_samples: List[DetDataSample]) -> Dict[str, Any]:
    """Params and FLOPs of the detector and of its backbone, one trace.

    mmengine's ``get_model_complexity_info`` traces a model twice (FLOPs,
    then activations, which are not needed here) and returns totals only;
    its :class:`FlopAnalyzer` gives the total and every submodule's share
    from one trace, so the backbone is read off the detector's trace.
    """
    analyzer = FlopAnalyzer(TensorMode(detector, data_samples), (inputs, ))
    # It would warn about every op it does not count (adds, NMS, ...).
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        result = dict(
            detector=dict(
                params=parameter_count(detector)[''], flops=analyzer.total()),
            backbone=None)
        backbone = getattr(detector, 'backbone', None)
        if isinstance(backbone, nn.Module):
            flops = analyzer.by_module().get('detector.backbone', 0)
            if not flops:  # not called as a module: count it on its own
                alone = FlopAnalyzer(backbone, (inputs, ))
                alone.unsupported_ops_warnings(False)
                flops = alone.total()
            result['backbone'] = dict(
                params=parameter_count(backbone)[''], flops=flops)
    return result


def _counting_model(cfg: Config) -> Tuple[nn.Module, List[int]]:
    """The config's detector in eval mode with random weights, and the list
    that its RoI box extractor appends the number of RoIs of each call to
    (empty without one)."""
    # Random weights, seeded so that the RPN keeps the same proposals (and
    # the RoI head the same count) on every run. torch's default
    # initialisation, not mmdet's: its spread of RPN scores lets NMS keep
    # max_per_img proposals, the count the model zoo's FLOPs assume, where
    # mmdet's near-equal initial scores let NMS drop some.
    torch.manual_seed(0)
    model = build_detector(cfg, init_weights=False).eval()
    rois: List[int] = []
    extractor = getattr(
        getattr(model, 'roi_head', None), 'bbox_roi_extractor', None)
    if isinstance(extractor, nn.ModuleList):  # cascade: the first stage's
        extractor = extractor[0]
    if extractor is not None:

        def hook(module: nn.Module, args: tuple) -> None:
            # called as bbox_roi_extractor(feats, rois)
            if len(args) > 1:
                rois.append(len(args[1]))

        extractor.register_forward_pre_hook(hook)
    return model, rois


def count_flops(cfg: Config, height: int, width: int) -> Dict[str, Any]:
    """Params and FLOPs of the config's detector and its backbone (a
    JSON-able dict), on a fake image of ``height`` x ``width``.

    ``num_proposals`` is how many proposals the RoI head was counted on
    (None without one).
    """
    model, rois = _counting_model(cfg)
    inputs, data_samples = fake_batch(model, height, width)
    return dict(
        source='fake image',
        input_shape=list(inputs.shape),
        requested_shape=[height, width],
        **count_detector(model, inputs, data_samples),
        num_proposals=rois[-1] if rois else None,
        convention=CONVENTION)


def val_loader(cfg: Config) -> Any:
    """The config's ``val_dataloader`` at batch 1 in this process, as
    mmdet's get_flops takes it."""
    loader_cfg = deepcopy(cfg.val_dataloader)
    loader_cfg.update(batch_size=1, num_workers=0, persistent_workers=False)
    return Runner.build_dataloader(loader_cfg)


def count_flops_on_data(cfg: Config, num_images: int) -> Dict[str, Any]:
    """Params and FLOPs of the config's detector and its backbone on the
    first ``num_images`` images of its ``val_dataloader`` (fewer if it has
    fewer), each preprocessed as in a test: the FLOPs are the mean over the
    images, as mmdet 3.3's ``get_flops.py --num-images`` gives them.

    ``input_shapes`` holds each image's padded shape, ``input_shape`` the
    one they share (None when they differ), ``num_proposals`` each image's
    RoI count (None without a RoI head).

    Raises:
        UserError: ``num_images`` below 1, or a dataset without images.
    """
    if num_images < 1:
        raise UserError(f'--num-images {num_images}: count on at least one '
                        'image')
    model, rois = _counting_model(cfg)
    shapes, counts, proposals = [], [], []
    for data in val_loader(cfg):
        if len(shapes) == num_images:
            break
        data = model.data_preprocessor(data, False)
        counts.append(
            count_detector(model, data['inputs'], data['data_samples']))
        shapes.append(list(data['inputs'].shape))
        if rois:
            proposals.append(rois[-1])
    if not counts:
        raise UserError('val_dataloader has no images; check its dataset '
                        '(ann_file, data_prefix)')

    def mean(part: str) -> Optional[Dict[str, int]]:
        if counts[0][part] is None:
            return None
        flops = sum(c[part]['flops'] for c in counts) / len(counts)
        return dict(params=counts[0][part]['params'], flops=round(flops))

    return dict(
        source='val_dataloader',
        num_images=len(counts),
        input_shape=shapes[0] if all(s == shapes[0] for s in shapes) else None,
        input_shapes=shapes,
        requested_shape=None,
        detector=mean('detector'),
        backbone=mean('backbone'),
        num_proposals=proposals or None,
        convention=CONVENTION)


def flops_table(result: Dict[str, Any]) -> str:
    """The markdown table: a row for the detector and for the backbone.

    Counted on several images of different sizes, the shape column says
    ``mean of N images``."""
    if result['input_shape'] is None:
        shape = f'mean of {result["num_images"]} images'
    else:
        shape = 'x'.join(map(str, result['input_shape']))
    lines = [
        '| part | input shape | params (M) | FLOPs (G) |', '|---|---|---|---|'
    ]
    for part in ('detector', 'backbone'):
        counts: Optional[Dict[str, int]] = result[part]
        if counts is None:
            lines.append(f'| {part} | {shape} | – | – |')
        else:
            lines.append(f'| {part} | {shape} | {counts["params"] / 1e6:.3f} '
                         f'| {counts["flops"] / 1e9:.3f} |')
    return '\n'.join(lines)

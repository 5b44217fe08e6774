# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Class activation maps of a two-stage detector's layers, and their grid.

What ``tools/analysis_tools/cam.py`` draws: the Res2Net paper's Grad-CAM
figure for a detector trained here, the image with the explained
detections, then one panel per backbone stage (or chosen layer) with its
class activation map over the image.

Grad-CAM (Selvaraju et al., 2017) of a feature map ``A`` (C x h x w) for a
target score ``y``: ``cam = ReLU(sum_c w_c A_c)`` with ``w_c`` the mean of
``dy/dA_c`` over h and w; it is upsampled to the image and scaled to [0, 1].
The target ``y`` is the sum of the scores of the top-k detections.
HiResCAM (Draelos & Carin, 2020) keeps the gradient's place:
``cam = ReLU(sum_c dy/dA_c * A_c)``. A detection's score only depends on
the features its RoI pools (and their receptive fields), and Grad-CAM's
averaged weights spread that over the whole map: on the demo data, whose
flat shapes sit on a textured background, Grad-CAM often lights the
background more than the objects, HiResCAM the objects.
"""
import os.path as osp
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from mmdet.registry import DATASETS
from mmdet.utils import get_test_pipeline_cfg
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..engine.cli import build_detector
from ..engine.fileio import write_atomically
from ..errors import UserError

# The ways to weigh a feature map by its gradient, and their names.
METHODS = ('gradcam', 'hirescam')
METHOD_NAMES = dict(gradcam='Grad-CAM', hirescam='HiResCAM')


class Layer(NamedTuple):
    """A feature map to explain: a module's output, or one of its outputs.

    Attributes:
        name: The panel's name, e.g. ``layer3`` or ``neck.fpn_convs.0``.
        module: The module whose forward output is captured.
        index: Which element of a tuple output; None for a tensor.
    """
    name: str
    module: nn.Module
    index: Optional[int]


class StageCam(NamedTuple):
    """One layer's class activation map.

    Attributes:
        name: The layer's name.
        stride: Input pixels per feature-map cell.
        cam: The map at the original image's size, in [0, 1].
    """
    name: str
    stride: float
    cam: np.ndarray


class Detections(NamedTuple):
    """The explained detections, in the original image's pixels."""
    bboxes: np.ndarray  # (k, 4) x1, y1, x2, y2
    scores: np.ndarray
    labels: np.ndarray


def read_image(path: str) -> np.ndarray:
    """The image as RGB uint8 (H, W, 3).

    Raises:
        UserError: The file is not an image that OpenCV decodes.
    """
    try:
        image = mmcv.imread(path, channel_order='rgb')
    except Exception as err:  # cv2 fails converting what it did not decode
        image, cause = None, err
    else:
        cause = None
    if image is None:
        raise UserError(f'cannot read image {path}: not an image file that '
                        'OpenCV decodes') from cause
    return image


def load_detector(cfg: Config, checkpoint: str, device: str) -> nn.Module:
    """The config's two-stage detector with the checkpoint's weights, in
    eval mode on ``device``.

    Only a two-stage detector is explained: its RoI head re-scores given
    boxes (:func:`rescore`) when the detection scores do not backpropagate.
    The class names come from the checkpoint (see
    :func:`~projects.res2net.engine.cli.build_detector`), else from the
    config's test dataset, so that the panels name what was detected.

    Raises:
        UserError: The checkpoint cannot be read or does not fit the model,
            or the model is not a two-stage detector.
    """
    model = build_detector(cfg, checkpoint)
    if not (getattr(model, 'with_rpn', False)
            and getattr(model, 'with_roi_head', False)):
        raise UserError(f'{type(model).__name__} is not a two-stage '
                        'detector (RPN and RoI head), which cam.py explains')
    if not model.dataset_meta.get('classes'):
        dataset = dict(cfg.test_dataloader.dataset, lazy_init=True)
        try:
            classes = DATASETS.build(dataset).metainfo.get('classes')
        except Exception:  # a dataset that needs its files even lazily
            classes = None
        model.dataset_meta = {'classes': tuple(classes or ())}
    return model.to(device).eval()


def select_layers(model: nn.Module,
                  *,
                  stages: Optional[Sequence[int]] = None,
                  target_layers: Optional[Sequence[str]] = None
                  ) -> List[Layer]:
    """The feature maps to explain.

    By default each backbone output (``model.backbone(x)`` returns one per
    stage in ``out_indices``), named after the stage's ResNet layer: the
    paper's figure, stage by stage.

    Args:
        model: The detector.
        stages: ``--stages``: backbone stages, 0-based, among its
            ``out_indices``; None for all of them.
        target_layers: ``--target-layers``: modules by their name in the
            model, explained instead of the stages.

    Raises:
        UserError: A stage that the backbone does not output, or a module
            name that the model does not have.
    """
    if target_layers:
        modules = dict(model.named_modules())
        for name in target_layers:
            if name not in modules:
                near = [
                    n for n in modules if n.startswith(name.rsplit('.', 1)[0])
                ][:6] or ['backbone.layer1']
                raise UserError(f'--target-layers: the model has no module '
                                f'{name!r}; e.g. {", ".join(near)}')
        return [Layer(name, modules[name], None) for name in target_layers]
    backbone = model.backbone
    out_indices = list(getattr(backbone, 'out_indices', []))
    layer_names = list(getattr(backbone, 'res_layers', []))
    if not out_indices:
        raise UserError(f'{type(backbone).__name__} names no out_indices; '
                        'pick the modules with --target-layers')
    if stages is None:
        stages = out_indices
    layers = []
    for stage in stages:
        if stage not in out_indices:
            raise UserError(f'--stages {stage}: the backbone outputs stages '
                            f'{out_indices} (model.backbone.out_indices)')
        name = layer_names[stage] if stage < len(layer_names) else \
            f'stage {stage}'
        layers.append(Layer(name, backbone, out_indices.index(stage)))
    return layers


def cam_input(model: nn.Module, cfg: Config,
              image: str) -> Tuple[Tensor, list]:
    """The image as the detector tests it: the config's test pipeline, then
    the model's data preprocessor (normalise, pad).

    The maps explain the detections that a test of the detector makes, so
    the input is the one the test makes of the image.

    Returns:
        The batch of one image (1, 3, H, W) and its data samples.
    """
    pipeline = Compose(get_test_pipeline_cfg(cfg))
    data = pipeline(dict(img_path=image, img_id=0))
    data = model.data_preprocessor(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
        False)
    return data['inputs'], data['data_samples']


def rescore(model: nn.Module, feats: Tuple[Tensor], samples: list,
            results: InstanceData) -> Tensor:
    """Scores of ``results`` that backpropagate, when mmdet's are not.

    The detected boxes are fed to the RoI head as proposals and pooled from
    the neck features again; ``predict_bbox`` without a test config returns
    each box's class probabilities before NMS, of which the detected
    label's is taken.
    """
    proposals = InstanceData(bboxes=results.bboxes.detach())
    metas = [sample.metainfo for sample in samples]
    raw = model.roi_head.predict_bbox(
        feats, metas, [proposals], rcnn_test_cfg=None)[0]
    return raw.scores[torch.arange(len(results)), results.labels]


def activation_maps(model: nn.Module, inputs: Tensor, samples: list,
                    layers: Sequence[Layer], *, topk: int, score_thr: float,
                    methods: Sequence[str]
                    ) -> Tuple[Detections, Dict[str, List[StageCam]], str]:
    """Detect, and map each layer's evidence for the top detections.

    The detector runs its own test path (``extract_feat``, the RPN's and
    the RoI head's ``predict``) with gradients on. With mmdet's hard NMS the
    detection scores are indexed out of the RoI head's softmax, so they
    backpropagate to the features; where they do not (e.g. soft-NMS
    computes them in a custom op without a backward), the detections are
    re-scored with :func:`rescore`.

    Args:
        model: The two-stage detector, in eval mode.
        inputs: The preprocessed image batch (1, 3, H, W).
        samples: Its data samples (image meta data).
        layers: The feature maps to explain.
        topk: How many detections the target score sums.
        score_thr: Only detections scoring this much count (the best one if
            none does).
        methods: Any of ``gradcam`` and ``hirescam``.

    Returns:
        The explained detections, each method's maps (at the original image
        size) and what the target score sums.

    Raises:
        UserError: The detector finds nothing in the image, or a layer
            gives no feature map (N, C, H, W).
    """
    captured: Dict[str, Tensor] = {}

    def hook(layer: Layer):

        def save(module: nn.Module, args, output) -> None:
            captured[layer.name] = output if layer.index is None else \
                output[layer.index]

        return save

    handles = [
        layer.module.register_forward_hook(hook(layer)) for layer in layers
    ]
    try:
        with torch.enable_grad():
            # Frozen stages' outputs join the graph through the input.
            inputs = inputs.detach().requires_grad_(True)
            feats = model.extract_feat(inputs)
            rpn_results = model.rpn_head.predict(feats, samples, rescale=False)
            results = model.roi_head.predict(
                feats, rpn_results, samples, rescale=False)[0]
            if len(results) == 0:
                raise UserError('the detector finds nothing in the image, '
                                'so there is no score to explain')
            scores = results.scores.detach()
            order = torch.argsort(scores, descending=True)
            keep = order[scores[order] >= score_thr][:topk]
            results = results[keep if len(keep) else order[:1]]
            maps = [captured.get(layer.name) for layer in layers]
            for layer, feat in zip(layers, maps):
                if not (isinstance(feat, Tensor) and feat.dim() == 4):
                    raise UserError(
                        f'{layer.name} gives no feature map (N, C, H, W) '
                        'in the test forward; pick a conv layer or stage')
            grads, how = None, 'detection scores'
            if results.scores.requires_grad:
                try:
                    grads = torch.autograd.grad(
                        results.scores.sum(), maps, allow_unused=True)
                except (RuntimeError, NotImplementedError):
                    grads = None  # an op on the way has no backward
            if grads is None:
                grads = torch.autograd.grad(
                    rescore(model, feats, samples, results).sum(),
                    maps,
                    allow_unused=True)
                how = 'class probabilities of the detected boxes'
    finally:
        for handle in handles:
            handle.remove()

    meta = samples[0].metainfo
    cams = {method: [] for method in methods}
    for layer, feat, grad in zip(layers, maps, grads):
        feat = feat.detach()
        grad = torch.zeros_like(feat) if grad is None else grad
        stride = inputs.shape[-1] / feat.shape[-1]
        for method in methods:
            weights = grad.mean(dim=(2, 3), keepdim=True) \
                if method == 'gradcam' else grad
            cam = F.relu((weights * feat).sum(dim=1, keepdim=True))
            cams[method].append(
                StageCam(layer.name, stride, to_image(cam, meta)))
    scale_w, scale_h = meta['scale_factor']
    bboxes = results.bboxes.detach().cpu().numpy() / np.array(
        [scale_w, scale_h, scale_w, scale_h])
    detections = Detections(bboxes,
                            results.scores.detach().cpu().numpy(),
                            results.labels.cpu().numpy())
    return detections, cams, how


def to_image(cam: Tensor, meta: dict) -> np.ndarray:
    """A (1, 1, h, w) map at the original image's size, scaled to [0, 1].

    The network input is the resized image padded at the bottom and right
    (``batch_input_shape``); the map is upsampled to that, cropped to the
    resized image (``img_shape``) and resized to ``ori_shape``.
    """
    cam = F.interpolate(
        cam,
        size=meta['batch_input_shape'],
        mode='bilinear',
        align_corners=False)
    height, width = meta['img_shape']
    cam = cam[..., :height, :width]
    cam = F.interpolate(
        cam, size=meta['ori_shape'], mode='bilinear', align_corners=False)
    cam = cam[0, 0].cpu().numpy().astype(np.float32)
    low, high = float(cam.min()), float(cam.max())
    return (cam - low) / (high - low) if high > low else np.zeros_like(cam)


def class_name(classes: Sequence[str], label: int) -> str:
    """The name of class ``label``; the number where the detector's class
    names (from its checkpoint or config) do not reach it."""
    return classes[label] if label < len(classes) else str(label)


def grid_title(image: str, detections: Detections,
               cams: Mapping[str, Sequence[StageCam]], how: str) -> str:
    """The grid's title: the methods, the image's file name and what the
    explained target score sums (see :func:`activation_maps`), so that a
    saved figure says what it shows."""
    names = ' and '.join(METHOD_NAMES[method] for method in cams)
    return (f'{names} of {osp.basename(image)}: target = sum of '
            f'{len(detections.scores)} {how}')


def draw(image: np.ndarray, detections: Detections,
         cams: Mapping[str, Sequence[StageCam]], *, classes: Sequence[str],
         alpha: float, title: str) -> Figure:
    """The grid: a row per method, of the image with the detections, then
    one map per layer.

    Args:
        image: The image, RGB (H, W, 3).
        detections: The explained detections, in the image's pixels.
        cams: Each method's maps (see :func:`activation_maps`).
        classes: The detector's class names, for the boxes' labels.
        alpha: The heat map's opacity over the image.
        title: The figure's title (see :func:`grid_title`).
    """
    rows, cols = len(cams), 1 + len(next(iter(cams.values())))
    height, width = image.shape[:2]
    side = 3.0 if cols <= 5 else 15 / cols  # inches per panel
    fig = Figure(
        figsize=(cols * side, rows * side * height / width + 0.6),
        layout='constrained')
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for row, (method, stages) in zip(axes, cams.items()):
        draw_detections(row[0], image, detections, classes)
        if rows > 1:
            row[0].set_ylabel(METHOD_NAMES[method], fontsize=11)
        for ax, stage in zip(row[1:], stages):
            ax.imshow(image, interpolation='nearest')
            ax.imshow(
                stage.cam,
                cmap='jet',
                alpha=alpha,
                vmin=0,
                vmax=1,
                interpolation='nearest')
            empty = ', all zero' if stage.cam.max() == 0 else ''
            ax.set_title(
                f'{stage.name} (stride {stage.stride:g}{empty})', fontsize=9)
    for ax in axes.ravel():  # the image fills each panel, nothing more
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
    fig.suptitle(title, fontsize=9)
    return fig


def draw_detections(ax, image: np.ndarray, detections: Detections,
                    classes: Sequence[str]) -> None:
    """The image with the boxes, classes and scores of the detections."""
    height = image.shape[0]
    # imshow centres pixel i on i, so it covers [i - 0.5, i + 0.5].
    ax.imshow(image, interpolation='nearest')
    colors = ('#ff3030', '#30c0ff', '#ffd000', '#40ff40', '#ff40ff')
    for box, score, label in zip(*detections):
        x1, y1, x2, y2 = box - 0.5
        color = colors[int(label) % len(colors)]
        ax.add_patch(
            Rectangle((x1, y1),
                      x2 - x1,
                      y2 - y1,
                      fill=False,
                      edgecolor=color,
                      linewidth=1.5))
        name = class_name(classes, label)
        inside = y1 < 0.07 * height  # no room above: label inside the box
        ax.text(
            x1,
            y1,
            f'{name} {score:.2f}',
            color='black',
            fontsize=7,
            va='top' if inside else 'bottom',
            bbox=dict(facecolor=color, edgecolor='none', pad=1, alpha=0.8))
    ax.set_title(f'top {len(detections.scores)} detections', fontsize=9)


def save_maps(path: str, detections: Detections,
              cams: Mapping[str, Sequence[StageCam]]) -> None:
    """Save the maps and the explained detections as a numpy ``.npz``.

    For analyses beyond the figure: each map at the image's size, in
    [0, 1], under ``<method>/<layer>`` (e.g. ``hirescam/layer4``), and the
    detections' ``bboxes``, ``scores`` and ``labels``. Written atomically:
    an interrupted run leaves no partial file.
    """
    arrays = {
        f'{method}/{stage.name}': stage.cam
        for method, stages in cams.items()
        for stage in stages
    }
    arrays.update(
        bboxes=detections.bboxes,
        scores=detections.scores,
        labels=detections.labels)
    write_atomically(path, lambda tmp: np.savez_compressed(tmp, **arrays))

# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Class activation maps of the trained demo detector."""

import numpy as np
import pytest

from projects.res2net.analysis.cam import (Detections, StageCam,
                                           activation_maps, cam_input,
                                           class_name, grid_title,
                                           load_detector, select_layers)
from projects.res2net.engine.cli import load_config
from projects.res2net.errors import UserError

DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'
STAGES = ['layer1', 'layer2', 'layer3', 'layer4']


@pytest.fixture(scope='module')
def detector(trained_demo):
    """The trained demo detector and its config."""
    cfg = load_config(DEMO, dict(data_root=f'{trained_demo.root}/data/'))
    return load_detector(cfg, str(trained_demo.checkpoint), 'cpu'), cfg


def test_maps_on_the_objects(detector, trained_demo, val_images):
    """HiResCAM's maps are higher on the objects than off them.

    Over the first 12 validation images, pooled: about 13x, 7x, 3x and 2.8x
    from the first stage to the last (per image the last stage is on the
    objects in 10 images of 12). Grad-CAM's last stage is not (about 0.4x):
    its channel weights, averaged over the map, light the textured
    background of the demo images more than their flat shapes.
    """
    model, cfg = detector
    layers = select_layers(model)
    assert [layer.name for layer in layers] == STAGES
    inside, outside = {}, {}
    data = trained_demo.root / 'data'
    for path, boxes, shape in sorted(val_images(data))[:12]:
        inputs, samples = cam_input(model, cfg, str(path))
        detections, maps, how = activation_maps(
            model,
            inputs,
            samples,
            layers,
            topk=3,
            score_thr=0.3,
            methods=['gradcam', 'hirescam'])
        assert how == 'detection scores'
        assert 1 <= len(detections.scores) <= 3
        on_objects = np.zeros(shape, bool)
        for x, y, w, h in boxes:
            on_objects[int(y):int(np.ceil(y + h)),
                       int(x):int(np.ceil(x + w))] = True
        for method, stages in maps.items():
            assert [m.name for m in stages] == STAGES
            assert [m.stride for m in stages] == [4, 8, 16, 32]
            for stage in stages:
                assert stage.cam.shape == shape
                assert 0 <= stage.cam.min() <= stage.cam.max() <= 1
                key = method, stage.name
                inside.setdefault(key, []).append(stage.cam[on_objects].mean())
                outside.setdefault(key,
                                   []).append(stage.cam[~on_objects].mean())
    ratio = {
        key: np.mean(inside[key]) / np.mean(outside[key])
        for key in inside
    }
    assert ratio['hirescam', 'layer1'] > 3, ratio
    assert ratio['hirescam', 'layer2'] > 3, ratio
    assert ratio['hirescam', 'layer3'] > 1.5, ratio
    assert ratio['hirescam', 'layer4'] > 1.2, ratio


def test_scores_without_a_backward_are_re_scored(trained_demo, val_images):
    """Soft-NMS computes the scores in an op without a backward."""
    cfg = load_config(DEMO, {'model.test_cfg.rcnn.nms.type': 'soft_nms'})
    model = load_detector(cfg, str(trained_demo.checkpoint), 'cpu')
    path = val_images(trained_demo.root / 'data')[0][0]
    inputs, samples = cam_input(model, cfg, str(path))
    layers = select_layers(model, stages=[3])
    detections, maps, how = activation_maps(
        model,
        inputs,
        samples,
        layers,
        topk=2,
        score_thr=0.3,
        methods=['hirescam', 'gradcam'])
    assert how == 'class probabilities of the detected boxes'
    # The re-scored probabilities' gradient reaches layer4: Grad-CAM
    # weighs its channels by their mean gradients, a flat map only if none
    # flows. HiResCAM (the ReLU of gradient x activation, cell by cell) can
    # be flat with a gradient: all its cells negative, as the demo model's
    # first image gives at layer4 with Soft-NMS.
    for method in ('hirescam', 'gradcam'):
        (stage, ) = maps[method]
        assert stage.name == 'layer4'
        assert 0 <= stage.cam.min() <= stage.cam.max() <= 1
    assert maps['gradcam'][0].cam.std() > 0.01


def test_layers_to_explain(detector):
    model, _ = detector
    layers = select_layers(model, stages=[1, 3])
    assert [(layer.name, layer.index) for layer in layers] == [('layer2', 1),
                                                               ('layer4', 3)]
    layers = select_layers(model, target_layers=['neck.fpn_convs.0'])
    assert layers[0].module is model.neck.fpn_convs[0]
    with pytest.raises(UserError, match=r'outputs stages \[0, 1, 2, 3\]'):
        select_layers(model, stages=[4])
    with pytest.raises(UserError, match="no module 'neck.nope'"):
        select_layers(model, target_layers=['neck.nope'])


def test_title_and_class_names_say_what_the_grid_shows():
    detections = Detections(
        np.zeros((2, 4)), np.array([0.9, 0.8]), np.array([0, 5]))
    cams = {
        method: [StageCam('layer4', 32, np.zeros((2, 2)))]
        for method in ('gradcam', 'hirescam')
    }
    assert grid_title('data/x/000001.png', detections, cams,
                      'detection scores') == (
                          'Grad-CAM and HiResCAM of 000001.png: target = '
                          'sum of 2 detection scores')
    # A label beyond the class names that the detector knows: its number.
    assert [
        class_name(('circle', 'square'), label) for label in detections.labels
    ] == ['circle', '5']

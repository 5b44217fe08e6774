# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/analysis_tools/cam.py on the trained demo detector."""
import json

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from projects.res2net.cli import load_config
from projects.res2net.errors import UserError

TOOL = 'analysis_tools/cam.py'
DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'
STAGES = ['layer1', 'layer2', 'layer3', 'layer4']


@pytest.fixture(scope='module')
def cam(load_tool):
    """The tool as a module, for its functions."""
    return load_tool(TOOL)


@pytest.fixture(scope='module')
def detector(cam, trained_demo):
    """The trained demo detector and its config."""
    cfg = load_config(DEMO, dict(data_root=f'{trained_demo.root}/data/'))
    return cam.load_detector(cfg, str(trained_demo.checkpoint), 'cpu'), cfg


def val_images(data_root):
    """The validation images with their ground-truth boxes, most objects
    first."""
    coco = json.loads(
        (data_root / 'annotations' / 'instances_val2017.json').read_text())
    boxes = {image['id']: [] for image in coco['images']}
    for ann in coco['annotations']:
        boxes[ann['image_id']].append(ann['bbox'])
    images = [(data_root / 'val2017' / image['file_name'], boxes[image['id']],
               (image['height'], image['width'])) for image in coco['images']]
    return sorted(images, key=lambda item: -len(item[1]))


def test_cam_grid(run_tool, trained_demo, tmp_path):
    image, boxes, _ = val_images(trained_demo.root / 'data')[0]
    out = tmp_path / 'out' / 'cam.png'
    maps = tmp_path / 'maps.npz'
    result = run_tool(TOOL, DEMO, trained_demo.checkpoint, image, '--out', out,
                      '--save-maps', maps, '--topk', 2, '--device', 'cpu',
                      '--method', 'gradcam', 'hirescam')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'explained: ' in result.stdout
    grid = imread(out)
    # A row per method of 5 panels of 3 inches (128 x 128 images), and a
    # title, at 100 dpi.
    assert grid.shape[:2] == (660, 1500)
    for row in range(2):
        for col in range(5):
            panel = grid[40 + row * 300:(row + 1) * 300,
                         col * 300 + 20:(col + 1) * 300 - 20, :3]
            assert panel.std() > 0.05, f'panel {row}, {col} is blank'
    saved = np.load(maps)
    assert 1 <= len(saved['scores']) <= 2
    assert saved['bboxes'].shape == (len(saved['scores']), 4)
    for method in ('gradcam', 'hirescam'):
        for stage in STAGES:
            heat = saved[f'{method}/{stage}']
            assert heat.shape == (128, 128)
            assert heat.min() >= 0 and heat.max() <= 1
        # Each method lights some stage. Grad-CAM may find no positive
        # evidence in a stage, the last one included (its map is the ReLU of
        # a sum that can be negative everywhere): whether it does depends on
        # the training run's random path.
        assert max(saved[f'{method}/{stage}'].std() for stage in STAGES) > 0.05
    # HiResCAM, faithful to the gradient at each position, lights the last.
    assert saved['hirescam/layer4'].std() > 0.01


def test_maps_on_the_objects(cam, detector, trained_demo):
    """HiResCAM's maps are higher on the objects than off them.

    Over the first 12 validation images, pooled: about 13x, 7x, 3x and 2.8x
    from the first stage to the last (per image the last stage is on the
    objects in 10 images of 12). Grad-CAM's last stage is not (about 0.4x):
    its channel weights, averaged over the map, light the textured
    background of the demo images more than their flat shapes.
    """
    model, cfg = detector
    layers = cam.select_layers(model, None, None)
    assert [layer.name for layer in layers] == STAGES
    inside, outside = {}, {}
    data = trained_demo.root / 'data'
    for path, boxes, shape in sorted(val_images(data))[:12]:
        inputs, samples = cam.prepare(model, cfg, str(path))
        detections, maps, how = cam.activation_maps(model, inputs, samples,
                                                    layers, 3, 0.3,
                                                    ['gradcam', 'hirescam'])
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


def test_scores_without_a_backward_are_re_scored(cam, trained_demo):
    """Soft-NMS computes the scores in an op without a backward."""
    cfg = load_config(DEMO, {'model.test_cfg.rcnn.nms.type': 'soft_nms'})
    model = cam.load_detector(cfg, str(trained_demo.checkpoint), 'cpu')
    path = val_images(trained_demo.root / 'data')[0][0]
    inputs, samples = cam.prepare(model, cfg, str(path))
    layers = cam.select_layers(model, [3], None)
    detections, maps, how = cam.activation_maps(model, inputs, samples, layers,
                                                2, 0.3, ['hirescam'])
    assert how == 'class probabilities of the detected boxes'
    (stage, ) = maps['hirescam']
    assert stage.name == 'layer4' and stage.cam.std() > 0.01


def test_layers_to_explain(cam, detector):
    model, _ = detector
    layers = cam.select_layers(model, [1, 3], None)
    assert [(layer.name, layer.index) for layer in layers] == [('layer2', 1),
                                                               ('layer4', 3)]
    layers = cam.select_layers(model, None, ['neck.fpn_convs.0'])
    assert layers[0].module is model.neck.fpn_convs[0]
    with pytest.raises(UserError, match=r'outputs stages \[0, 1, 2, 3\]'):
        cam.select_layers(model, [4], None)
    with pytest.raises(UserError, match="no module 'neck.nope'"):
        cam.select_layers(model, None, ['neck.nope'])


def test_missing_inputs(call_tool, tiny_demo_data, tmp_path, user_error):
    image = next((tiny_demo_data / 'val2017').iterdir())
    out = tmp_path / 'cam.png'
    result = call_tool(TOOL, DEMO, tmp_path / 'nope.pth', tmp_path / 'no.png',
                       '--out', out)
    user_error(result, 'image not found', 'no.png')
    result = call_tool(TOOL, DEMO, tmp_path / 'nope.pth', image, '--out', out)
    user_error(result, 'checkpoint not found', 'nope.pth')
    result = call_tool(TOOL, 'configs/nope.py', tmp_path / 'nope.pth', image,
                       '--out', out)
    user_error(result, 'checkpoint not found')
    if not torch.cuda.is_available():
        result = call_tool(TOOL, DEMO, __file__, image, '--out', out,
                           '--device', 'cuda')
        user_error(result, 'no CUDA device')
    assert not out.exists()


def test_unreadable_inputs(call_tool, tiny_demo_data, tmp_path, user_error):
    image = next((tiny_demo_data / 'val2017').iterdir())
    out = tmp_path / 'cam.png'
    result = call_tool(TOOL, DEMO, __file__, __file__, '--out', out)
    user_error(result, 'cannot read image', __file__)
    checkpoint = tmp_path / 'other.pth'
    torch.save({'state_dict': {'conv.weight': torch.zeros(1)}}, checkpoint)
    result = call_tool(TOOL, DEMO, checkpoint, image, '--out', out)
    user_error(result, 'cannot load checkpoint', 'other.pth')
    result = call_tool(TOOL, 'configs/nope.py', checkpoint, image, '--out',
                       out)
    user_error(result, 'config file not found', 'configs/nope.py')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['other.pth']

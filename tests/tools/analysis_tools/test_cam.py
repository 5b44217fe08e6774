# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/analysis_tools/cam.py on the trained demo detector, as a user runs
it: its arguments, output, exit status and files.

The maps themselves are tested in tests/projects/res2net/analysis/test_cam.py.
"""

import numpy as np
import torch
from matplotlib.image import imread

TOOL = 'analysis_tools/cam.py'
DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'
STAGES = ['layer1', 'layer2', 'layer3', 'layer4']


def test_cam_grid(call_tool, trained_demo, tmp_path, val_images):
    image, boxes, _ = val_images(trained_demo.root / 'data')[0]
    out = tmp_path / 'out' / 'cam.png'
    maps = tmp_path / 'maps.npz'
    result = call_tool(TOOL, DEMO, trained_demo.checkpoint, image, '--out',
                       out, '--save-maps', maps, '--topk', 2, '--device',
                       'cpu', '--method', 'gradcam', 'hirescam')
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

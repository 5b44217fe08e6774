# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/analysis_tools/benchmark.py: the JSON, the summary, the options."""
import copy
import json
import re

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from projects.res2net.cli import load_config
from projects.res2net.speed import describe_device

TOOL = 'analysis_tools/benchmark.py'
DEMO_CONFIG = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'
KEYS = {
    'config', 'checkpoint', 'device', 'hardware', 'batch_size', 'input_shape',
    'num_images', 'warmup', 'fps', 'ms_per_image', 'peak_memory_mb',
    'memory_kind', 'fuse_conv_bn', 'channels_last', 'compile', 'amp',
    'against', 'shape_note'
}
SUMMARY = re.compile(r'([\d.]+) fps, ([\d.]+) ms/image over (\d+) images '
                     r'after (\d+) warm-up')
# 100 proposals instead of 1000: the box head dominates on a CPU.
FAST = {'model.test_cfg.rpn.max_per_img': 100}


def _conditioned(model: nn.Module) -> nn.Module:
    """Weights whose detections are distinct, and BNs that fusing changes.

    On mmdet's initialisation (``build_detector`` gives a model without a
    checkpoint that), random BN statistics and affine terms (at their
    defaults fusing would change almost nothing), and class logits
    scaled up so that the scores spread over (0, 1) instead of all staying
    under the score threshold (or, with ``randomise``, all saturating at
    1.0, where NMS breaks ties arbitrarily).
    """
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=gen) / 10)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.add_(torch.randn(n, generator=gen) / 10)
                module.bias.copy_(torch.randn(n, generator=gen) / 10)
        model.roi_head.bbox_head.fc_cls.weight.mul_(10)
    return model


def _check_json(data: dict, stdout: str, num_images: int, warmup: int):
    assert set(data) == KEYS
    assert data['device'] == 'cpu'
    # The zoo table labels the fps with it: the CPU and its thread count.
    assert data['hardware'] == describe_device('cpu')
    assert data['hardware'].endswith(f', {torch.get_num_threads()} threads')
    assert data['batch_size'] == 1
    assert data['input_shape'] == [128, 128]
    assert (data['num_images'], data['warmup']) == (num_images, warmup)
    assert data['fps'] > 0 and data['ms_per_image'] > 0
    assert data['fps'] == pytest.approx(1000 / data['ms_per_image'])
    # The peak RSS of a process that holds torch, mmdet and a detector.
    assert data['memory_kind'] == 'cpu_max_rss'
    assert 100 < data['peak_memory_mb'] < 64 * 1024
    assert data['shape_note'] == (
        'test pipeline Resize(scale=(128, 128), keep_ratio=True); '
        'first input padded to 128x128')

    # One summary line with the JSON's numbers, after a progress bar.
    assert f'warm-up ({data["hardware"]}, batch 1' in stdout
    fps, ms, images, warm = SUMMARY.search(stdout).groups()
    assert float(fps) == pytest.approx(data['fps'], abs=0.006)
    assert float(ms) == pytest.approx(data['ms_per_image'], abs=0.06)
    assert (int(images), int(warm)) == (num_images, warmup)
    assert f'{num_images}/{num_images}' in stdout
    assert f'peak memory {data["peak_memory_mb"]:.1f} MB (cpu_max_rss)' \
        in stdout


def test_random_weights(run_tool, tiny_demo_data, quick, tmp_path):
    result = run_tool(TOOL, DEMO_CONFIG, '--device', 'cpu', '--work-dir',
                      tmp_path, '--num-images', 3, '--warmup', 1,
                      *quick(tiny_demo_data, **FAST))
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / 'benchmark.json').read_text())
    _check_json(data, result.stdout, 3, 1)
    assert data['config'] == DEMO_CONFIG
    assert data['checkpoint'] is None
    assert not data['fuse_conv_bn'] and not data['channels_last']
    assert not data['compile'] and data['against'] is None
    assert 'random weights, no checkpoint' in result.stdout
    assert f'written to {tmp_path / "benchmark.json"}' in result.stdout


def test_checkpoint_fused_channels_last(run_tool, repo, tiny_demo_data, quick,
                                        tmp_path, load_tool):
    cfg = load_config(str(repo / DEMO_CONFIG))
    model = _conditioned(load_tool(TOOL).build_detector(cfg))
    checkpoint = tmp_path / 'weights.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), checkpoint)
    batch_norms = sum(isinstance(m, _BatchNorm) for m in model.modules())

    # No --work-dir: the config's work_dir, set here, is used.
    work_dir = tmp_path / 'work'
    result = run_tool(TOOL, DEMO_CONFIG, checkpoint, '--device', 'cpu',
                      '--fuse-conv-bn', '--channels-last', '--num-images', 2,
                      '--warmup', 1,
                      *quick(tiny_demo_data, work_dir=work_dir, **FAST))
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((work_dir / 'benchmark.json').read_text())
    _check_json(data, result.stdout, 2, 1)
    assert data['checkpoint'] == str(checkpoint)
    assert data['fuse_conv_bn'] and data['channels_last']
    assert 'fused conv-bn, channels-last' in result.stdout
    assert f'weights {checkpoint}' in result.stdout
    # Res2Net's split-conv BNs too, which mmcv's fuse_conv_bn skips.
    assert f'fused {batch_norms} BatchNorm layers into convs (0 left)' \
        in result.stdout


def test_fused_and_channels_last_detect_the_same(repo, tiny_demo_data,
                                                 load_tool):
    tool = load_tool(TOOL)
    cfg = load_config(
        str(repo / DEMO_CONFIG), dict(data_root=f'{tiny_demo_data}/', **FAST))
    base = _conditioned(tool.build_detector(cfg))
    batches = list(tool.build_test_loader(cfg))

    def detect(fuse: bool, channels_last: bool) -> list:
        model, report = tool.prepare(
            copy.deepcopy(base), 'cpu', fuse, channels_last)
        assert report.left == 0 if fuse else report.folded == 0
        with torch.no_grad():
            return [
                tool.inference_step(model, data, channels_last)[0]
                for data in batches
            ]

    reference = detect(False, False)
    assert all(len(r.pred_instances) > 10 for r in reference)
    for fuse, channels_last in ((True, False), (False, True), (True, True)):
        for ref, res in zip(reference, detect(fuse, channels_last)):
            ref, res = ref.pred_instances, res.pred_instances
            assert torch.equal(res.labels, ref.labels)
            # Float rounding only: 1e-6 of a score, 1e-4 of a pixel here.
            torch.testing.assert_close(
                res.scores, ref.scores, rtol=0, atol=1e-4)
            torch.testing.assert_close(
                res.bboxes, ref.bboxes, rtol=0, atol=1e-2)


def test_deploy_against_resnet(call_tool, tiny_demo_data, quick, tmp_path):
    """--deploy is --fuse-conv-bn --channels-last; --against-backbone times
    the same detector with mmdet's ResNet in the same form, interleaved."""
    result = call_tool(TOOL, DEMO_CONFIG, '--device', 'cpu', '--deploy',
                       '--against-backbone', 'resnet', '--work-dir', tmp_path,
                       '--num-images', 2, '--warmup', 1,
                       *quick(tiny_demo_data, **FAST))
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / 'benchmark.json').read_text())
    assert data['fuse_conv_bn'] and data['channels_last']
    against = data['against']
    assert against['backbone'] == 'resnet'
    assert against['fps_ratio'] == pytest.approx(data['fps'] / against['fps'])
    assert against['fps'] == pytest.approx(1000 / against['ms_per_image'])
    assert f'fps ratio ours / resnet: {against["fps_ratio"]:.2f}' \
        in result.stdout
    assert '(cpu_max_rss, both detectors)' in result.stdout
    assert 'fused conv-bn, channels-last' in result.stdout


@pytest.mark.parametrize('args, message', [
    (['configs/no_such_config.py'], 'error: config file not found: '
     'configs/no_such_config.py'),
    ([DEMO_CONFIG, 'no_such.pth'], 'error: checkpoint not found: no_such.pth'),
    ([DEMO_CONFIG, '--cfg-options', 'data_root=/no/such/dir/'
      ], "error: test_dataloader (data_root='/no/such/dir/'): annotation file "
     'not found'),
    ([DEMO_CONFIG, '--num-images', 0], 'error: --num-images must be'),
    ([DEMO_CONFIG, '--amp', '--device', 'cpu'], 'error: --amp needs a GPU'),
])
def test_bad_input_is_one_line(call_tool, args, message):
    result = call_tool(TOOL, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is here')
def test_cuda_without_a_gpu(call_tool):
    result = call_tool(TOOL, DEMO_CONFIG, '--device', 'cuda')
    assert result.returncode == 2
    assert result.stderr.startswith('error: --device cuda: no CUDA device')


def test_checkpoint_that_does_not_fit(call_tool, tiny_demo_data, quick,
                                      tmp_path):
    checkpoint = tmp_path / 'other.pth'
    torch.save(dict(state_dict={'backbone.other': torch.zeros(1)}), checkpoint)
    result = call_tool(TOOL, DEMO_CONFIG, checkpoint, '--work-dir', tmp_path,
                       *quick(tiny_demo_data))
    assert result.returncode == 2
    assert result.stderr.startswith(
        f'error: cannot load checkpoint {checkpoint}: RuntimeError: ')
    assert 'unexpected key in source state_dict: backbone.other' \
        in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / 'benchmark.json').exists()

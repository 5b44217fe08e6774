# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/analysis_tools/benchmark.py: the JSON, the summary, the options."""
import json
import re
import sys

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from projects.res2net.analysis.speed import describe_device
from projects.res2net.engine.cli import build_detector, load_config

TOOL = 'analysis_tools/benchmark.py'
DEMO_CONFIG = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'
KEYS = {
    'config', 'checkpoint', 'device', 'hardware', 'batch_size', 'input_shape',
    'num_images', 'warmup', 'fps', 'ms_per_image', 'peak_memory_mb',
    'memory_kind', 'fuse_conv_bn', 'channels_last', 'compile', 'amp',
    'against', 'shape_note', 'compiles', 'precisions', 'seed', 'repeat_num',
    'fps_list'
}
SUMMARY = re.compile(r'([\d.]+) fps, ([\d.]+) ms/image over (\d+) images '
                     r'after (\d+) warm-up')
# 100 proposals instead of 1000: the box head dominates on a CPU.
FAST = {'model.test_cfg.rpn.max_per_img': 100}


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
    # Eager: nothing compiled, no other precision timed.
    assert (data['compiles'], data['precisions']) == (0, {})
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
    # Random weights: drawn from one seed, the same in every run.
    assert data['seed'] == 0
    assert not data['fuse_conv_bn'] and not data['channels_last']
    assert not data['compile'] and data['against'] is None
    assert 'random weights (seed 0), no checkpoint' in result.stdout
    assert f'written to {tmp_path / "benchmark.json"}' in result.stdout


def test_checkpoint_fused_channels_last(run_tool, repo, tiny_demo_data, quick,
                                        condition_detector, tmp_path):
    cfg = load_config(str(repo / DEMO_CONFIG))
    model = condition_detector(build_detector(cfg))
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
    assert data['seed'] is None  # the checkpoint's weights
    assert data['fuse_conv_bn'] and data['channels_last']
    assert 'fused conv-bn, channels-last' in result.stdout
    assert f'weights {checkpoint}' in result.stdout
    # Res2Net's split-conv BNs too, which mmcv's fuse_conv_bn skips.
    assert f'fused {batch_norms} BatchNorm layers into convs (0 left)' \
        in result.stdout


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


@pytest.mark.parametrize('args, message', [
    (['--precision', 'fp32', 'int8', '--against-backbone', 'resnet'
      ], 'error: --against-backbone and --precision: time one comparison at a '
     'time'),
    (['--precision', 'int8', '--int8-program', 'p.pt2'
      ], 'error: p.pt2 was made from a checkpoint: pass that checkpoint'),
])
def test_precision_flags_that_cannot_run_are_one_line(call_tool,
                                                      tiny_demo_data, quick,
                                                      tmp_path, args, message):
    result = call_tool(TOOL, DEMO_CONFIG, *args, '--work-dir', tmp_path,
                       *quick(tiny_demo_data))
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / 'benchmark.json').exists()


# The variables of mmdet's launchers that say how many processes there are.
WORLD_SIZES = ('WORLD_SIZE', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE')


def test_mmdets_documented_command(call_tool, repo, tiny_demo_data, quick,
                                   tmp_path, monkeypatch):
    """mmdet's docs: ``python -m torch.distributed.launch --nproc_per_node=1
    tools/analysis_tools/benchmark.py CONFIG CHECKPOINT --launcher pytorch``
    (the launcher's variables and --local-rank as it passes them), with
    mmdet 3.3's other flags: --checkpoint, --max-iter counting the warm-up,
    --num-warmup, --repeat-num, --log-interval's lines for the bar."""
    checkpoint = tmp_path / 'weights.pth'
    model = build_detector(load_config(str(repo / DEMO_CONFIG)))
    torch.save(dict(state_dict=model.state_dict(), meta={}), checkpoint)
    for name, value in (('RANK', '0'), ('WORLD_SIZE', '1'),
                        ('LOCAL_RANK', '0'), ('MASTER_ADDR', '127.0.0.1'),
                        ('MASTER_PORT', '29500')):
        monkeypatch.setenv(name, value)
    result = call_tool(TOOL, DEMO_CONFIG, '--checkpoint', checkpoint,
                       '--launcher', 'pytorch', '--local-rank=0', '--task',
                       'inference', '--dataset-type', 'test', '--max-iter', 2,
                       '--num-warmup', 1, '--repeat-num', 2, '--log-interval',
                       1, '--fuse-conv-bn', '--work-dir', tmp_path,
                       *quick(tiny_demo_data, **FAST))
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / 'benchmark.json').read_text())
    assert (data['num_images'], data['warmup']) == (1, 1)
    assert data['checkpoint'] == str(checkpoint) and data['fuse_conv_bn']
    # Two measurements: each one's fps, and the fps of both together.
    assert data['repeat_num'] == 2 and len(data['fps_list']) == 2
    seconds = sum(1 / fps for fps in data['fps_list'])
    assert data['fps'] == pytest.approx(2 / seconds)
    assert data['fps'] == pytest.approx(1000 / data['ms_per_image'])
    # mmdet's line after the warm-up image, in each; no progress bar.
    assert result.stdout.count('Done image [2  /2], fps: ') == 2
    assert 'elapsed' not in result.stdout
    assert 'fps of each of the 2 measurements: ' in result.stdout
    assert f'weights {checkpoint}' in result.stdout


@pytest.mark.parametrize('args, env, message', [
    (['x.pth', '--checkpoint', 'x.pth'], '', 'CHECKPOINT and --checkpoint'),
    (['--num-images', 2, '--max-iter', 3], '', '--num-images and --max-iter'),
    (['--max-iter', 5], '', '--max-iter 5 counts the warm-up'),
    (['--repeat-num', 0], '', '--warmup must be at least 0, --repeat-num '
     'and --log-interval at least 1 (got 5, 0 and None)'),
    (['--dataset-type', 'val'], '', '--dataset-type val: the detector is '
     'timed on the test dataloader'),
    (['--task', 'dataset', '--fuse-conv-bn', '--device', 'cpu'
      ], '', "--fuse-conv-bn, --device: the options of the detector's timing"),
    (['--launcher', 'pytorch'], '',
     '--launcher pytorch: this process was not started by its launcher'),
    (['--launcher', 'slurm'], 'SLURM_NTASKS=2',
     '--launcher slurm: 2 processes; a benchmark times one'),
])
def test_mmdets_flags_that_do_not_fit(call_tool, monkeypatch, args, env,
                                      message):
    for name in WORLD_SIZES:
        monkeypatch.delenv(name, raising=False)
    if env:
        monkeypatch.setenv(*env.split('='))
    result = call_tool(TOOL, DEMO_CONFIG, *args)
    assert result.returncode == 2
    assert result.stderr.startswith('error: ' + message)
    assert len(result.stderr.strip().splitlines()) == 1


def test_mmdets_data_tasks_need_psutil(call_tool, tiny_demo_data, quick,
                                       monkeypatch, user_error):
    monkeypatch.setitem(sys.modules, 'psutil', None)  # as if not installed
    user_error(
        call_tool(TOOL, DEMO_CONFIG, '--task', 'dataloader',
                  *quick(tiny_demo_data)), '--task dataloader',
        'needs psutil: pip install psutil')


def test_mmdets_data_tasks(call_tool, tiny_demo_data, quick, tmp_path):
    """--task dataloader and dataset: mmdet's own benchmarks, their log in
    --work-dir; a test set of 2 is timed whole."""
    pytest.importorskip('psutil')
    result = call_tool(TOOL, DEMO_CONFIG, '--task', 'dataloader',
                       '--num-warmup', 1, '--work-dir', tmp_path,
                       *quick(tiny_demo_data))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'test_dataloader has 2 batches: timing them all (--max-iter ' \
        '2000 asks for more)' in result.stdout
    assert 'dataloader of test_dataloader: ' in result.stdout
    assert 'Overall fps: ' in (tmp_path / 'benchmark.log').read_text()
    result = call_tool(TOOL, DEMO_CONFIG, '--task', 'dataset',
                       '--dataset-type', 'train', '--max-iter', 2,
                       '--num-warmup', 1, '--repeat-num', 2, '--log-interval',
                       1, *quick(tiny_demo_data))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'dataset of train_dataloader: ' in result.stdout
    assert '(mean of 2 measurement(s))' in result.stdout

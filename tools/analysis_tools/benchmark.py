# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Inference speed (fps, ms per image) and peak memory of a detector.

Measured as mmdet's ``tools/analysis_tools/benchmark.py`` does: batch 1,
the config's test dataloader without worker processes, and only the model's
``test_step`` timed (preprocessing on the device, forward, post-processing
with NMS; not the image loading); the warm-up images are left out. With
CUDA the clock is read between ``torch.cuda.synchronize()`` calls and the
memory is ``torch.cuda.max_memory_allocated()`` (``cuda_max_allocated``: the
weights included). On the CPU the memory is the process's peak resident
set size from ``resource.getrusage`` (``cpu_max_rss``: Python, libraries,
weights and activations together). The dataset is cycled when it has fewer
images than warm-up plus timed ones.

mmdet's own ``mmdet.utils.benchmark.InferenceBenchmark`` is not reused: it
moves the model to CUDA unconditionally, always loads a checkpoint, and
needs ``psutil`` (without it, importing the module fails).

``--fuse-conv-bn`` folds each eval-mode BatchNorm into the conv before it:
mmcv's ``fuse_conv_bn`` for conv/BN pairs that are consecutive children
(stems, 1x1 convs, downsamples) and, for Res2Net's split 3x3 convs, which
keep their convs and BNs in two parallel lists that mmcv's pass skips, each
``convs[i]`` with ``bns[i]``. ``--channels-last`` converts the model and each
preprocessed batch to ``torch.channels_last``, except mmcv's op modules
(RoIAlign, deformable convs), which need contiguous NCHW tensors (see
:func:`to_channels_last`). Either changes the detections by float rounding
only.

The results go to ``WORK_DIR/benchmark.json``. Without a checkpoint the
weights are random: the speed is still the network's, but post-processing
runs on meaningless detections.

Example:
    python tools/analysis_tools/benchmark.py \
        configs/faster_rcnn_r2_101_fpn_2x.py faster_r2_101.pth --fuse-conv-bn
"""
import argparse
import os.path as osp
import resource
import sys
import time
from copy import deepcopy
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from mmcv.cnn import fuse_conv_bn as mmcv_fuse_conv_bn
from mmengine.config import Config, DictAction
from mmengine.runner import Runner
from mmengine.utils import ProgressBar
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval

from projects.res2net.backbone import Bottle2neck
from projects.res2net.cli import (build_detector, check_data, load_config,
                                  require_file, run_tool, tool_parser,
                                  write_json)
from projects.res2net.errors import UserError


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        'Measure inference speed (fps, ms per image) and peak '
        'memory of a detector at batch 1; writes WORK_DIR/benchmark.json',
        'python tools/analysis_tools/benchmark.py '
        'configs/faster_rcnn_r2_101_fpn_2x.py faster_r2_101.pth '
        '--fuse-conv-bn --num-images 200')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        help='checkpoint file (default: none, random weights)')
    parser.add_argument(
        '--work-dir',
        help='the dir to write benchmark.json to (default: the config\'s '
        'work_dir, else ./work_dirs/<config name>)')
    parser.add_argument(
        '--num-images',
        type=int,
        default=200,
        help='images to time, after the warm-up (default: 200)')
    parser.add_argument(
        '--warmup',
        type=int,
        default=5,
        help='images run before timing starts (default: 5)')
    parser.add_argument(
        '--fuse-conv-bn',
        action='store_true',
        help='fold BatchNorm layers into the convs before them')
    parser.add_argument(
        '--channels-last',
        action='store_true',
        help='run the model and its inputs in torch.channels_last')
    parser.add_argument(
        '--device',
        choices=('cpu', 'cuda'),
        help='default: cuda when available, else cpu')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value, e.g. data_root=data/demo/'
        ' (moves every dataset path under the old root)')
    return parser.parse_args()


def _num_batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


def fuse_conv_bn(model: nn.Module) -> Tuple[int, int]:
    """Fold BatchNorm layers into the convs before them, in place.

    The model must be in eval mode: the BN's running statistics are folded.

    Returns:
        How many BN layers were fused, and how many are left (those that
        follow no plain conv, e.g. after a deformable conv).
    """
    before = _num_batch_norms(model)
    mmcv_fuse_conv_bn(model)
    for block in model.modules():
        if not isinstance(block, Bottle2neck):
            continue
        # _split_convs computes bns[i](convs[i](split)).
        for i, (conv, bn) in enumerate(zip(block.convs, block.bns)):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, _BatchNorm):
                block.convs[i] = fuse_conv_bn_eval(conv, bn)
                block.bns[i] = nn.Identity()
    left = _num_batch_norms(model)
    return before - left, left


def prepare(model: nn.Module,
            device: str = 'cpu',
            fuse: bool = False,
            channels_last: bool = False) -> Tuple[nn.Module, Tuple[int, int]]:
    """Put the model in eval mode on ``device``, fused and converted as asked.

    Returns:
        The model and :func:`fuse_conv_bn`'s counts ((0, 0) without fusing).
    """
    model.eval()
    fused = fuse_conv_bn(model) if fuse else (0, 0)
    model.to(device)
    if channels_last:
        to_channels_last(model)
    return model, fused


def _contiguous_inputs(module: nn.Module, args: tuple) -> tuple:
    return tuple(arg.contiguous() if isinstance(arg, Tensor) else arg
                 for arg in args)


def to_channels_last(model: nn.Module) -> int:
    """Convert the model to ``torch.channels_last``, except mmcv's ops.

    mmcv's compiled ops read their tensors as contiguous NCHW: on a
    channels-last input RoIAlign silently computes wrong features on the CPU
    and the deformable convs refuse it. Those modules (and their own
    submodules, e.g. a DCN's offset conv) stay contiguous and get
    contiguous copies of their inputs; an op that a head calls as a plain
    function is not covered.

    Returns:
        How many mmcv op modules were kept contiguous.
    """
    model.to(memory_format=torch.channels_last)
    kept = 0
    for module in model.modules():
        if type(module).__module__.startswith('mmcv.ops'):
            module.to(memory_format=torch.contiguous_format)
            module.register_forward_pre_hook(_contiguous_inputs)
            kept += 1
    return kept


def inference_step(model: nn.Module,
                   data: Dict[str, Any],
                   channels_last: bool = False) -> List[Any]:
    """What ``model.test_step(data)`` does, with channels-last inputs if asked.

    The batch is converted after the data preprocessor has stacked it.
    """
    data = model.data_preprocessor(data, False)
    if channels_last:
        data['inputs'] = data['inputs'].contiguous(
            memory_format=torch.channels_last)
    return model(**data, mode='predict')


def build_test_loader(cfg: Config) -> Iterable:
    """The test dataloader at batch 1 without worker processes (as mmdet's
    benchmark: workers would make the timing noisier)."""
    loader_cfg = deepcopy(cfg.test_dataloader)
    loader_cfg.update(batch_size=1, num_workers=0, persistent_workers=False)
    return Runner.build_dataloader(loader_cfg)


def _endless(loader: Iterable) -> Iterator:
    while True:
        empty = True
        for data in loader:
            empty = False
            yield data
        if empty:
            raise UserError('the test dataset has no images; check '
                            'test_dataloader.dataset (its ann_file)')


def _resizes(node: Any) -> Iterator[Dict]:
    """The resize transforms in a (nested) pipeline config."""
    if isinstance(node, dict):
        if 'Resize' in str(node.get('type', '')):
            yield node
        for value in node.values():
            yield from _resizes(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _resizes(value)


def resize_note(cfg: Config) -> str:
    """The test pipeline's resize step(s), e.g. ``Resize(scale=(1333, 800),
    keep_ratio=True)``."""
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    steps = [
        f"{t['type']}(scale={t.get('scale', t.get('scale_factor'))}, "
        f"keep_ratio={t.get('keep_ratio', False)})"
        for t in _resizes(dataset.get('pipeline', []))
    ]
    return ', '.join(steps) if steps else 'no resize in the test pipeline'


def _sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def peak_memory(device: str) -> Tuple[float, str]:
    """Peak memory in MB (2**20 bytes) and what it is."""
    if device == 'cuda':
        return torch.cuda.max_memory_allocated() / 2**20, 'cuda_max_allocated'
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    mb = rss / 2**20 if sys.platform == 'darwin' else rss / 2**10
    return mb, 'cpu_max_rss'


def time_inference(model: nn.Module, loader: Iterable, device: str,
                   num_images: int, warmup: int,
                   channels_last: bool) -> Tuple[float, Optional[tuple]]:
    """Seconds spent in :func:`inference_step` on ``num_images`` images
    after ``warmup`` ones, and the padded input shape of the first."""
    batches = _endless(loader)
    total = 0.0
    shape = None
    bar = None
    with torch.no_grad():
        for i in range(warmup + num_images):
            data = next(batches)
            if i == warmup:
                bar = ProgressBar(num_images)
            _sync(device)
            start = time.perf_counter()
            results = inference_step(model, data, channels_last)
            _sync(device)
            elapsed = time.perf_counter() - start
            if shape is None:
                shape = results[0].metainfo.get('batch_input_shape')
            if bar is not None:
                total += elapsed
                bar.update()
    print()  # end the progress bar's line
    return total, shape


def work_dir_of(args: argparse.Namespace, cfg: Config) -> str:
    """``--work-dir``, else the config's, else ``./work_dirs/<name>``."""
    if args.work_dir is not None:
        return args.work_dir
    if cfg.get('work_dir') is not None:
        return cfg.work_dir
    return osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])


def choose_device(requested: Optional[str]) -> str:
    """``requested``, or cuda when available, else cpu.

    Raises:
        UserError: cuda asked for but not available.
    """
    available = torch.cuda.is_available()
    if requested == 'cuda' and not available:
        raise UserError('--device cuda: no CUDA device is available to torch'
                        ' here; use --device cpu')
    return requested or ('cuda' if available else 'cpu')


def main() -> None:
    args = parse_args()
    if args.num_images < 1 or args.warmup < 0:
        raise UserError('--num-images must be at least 1 and --warmup at '
                        f'least 0 (got {args.num_images} and {args.warmup})')
    cfg = load_config(args.config, args.cfg_options)
    if args.checkpoint is not None and '://' not in args.checkpoint:
        require_file(
            args.checkpoint, 'checkpoint',
            'pass the .pth that tools/train.py wrote, or none to time '
            'random weights')
    device = choose_device(args.device)
    check_data(cfg, ['test_dataloader'])
    if cfg.get('env_cfg', {}).get('cudnn_benchmark'):
        torch.backends.cudnn.benchmark = True

    model = build_detector(cfg, args.checkpoint)
    model, (fused, unfused) = prepare(model, device, args.fuse_conv_bn,
                                      args.channels_last)
    loader = build_test_loader(cfg)
    seconds, shape = time_inference(model, loader, device, args.num_images,
                                    args.warmup, args.channels_last)
    memory, memory_kind = peak_memory(device)
    # One value, rounded once: what is printed is what is stored.
    memory = round(memory, 1)

    ms_per_image = 1000 * seconds / args.num_images
    shape_note = f'test pipeline {resize_note(cfg)}'
    if shape is not None:
        shape_note += f'; first input padded to {shape[0]}x{shape[1]}'
    result = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        device=device,
        batch_size=1,
        num_images=args.num_images,
        warmup=args.warmup,
        fps=args.num_images / seconds,
        ms_per_image=ms_per_image,
        peak_memory_mb=memory,
        memory_kind=memory_kind,
        fuse_conv_bn=args.fuse_conv_bn,
        channels_last=args.channels_last,
        shape_note=shape_note)
    path = osp.join(work_dir_of(args, cfg), 'benchmark.json')
    write_json(path, result)

    options = [
        name for name, on in (('fused conv-bn', args.fuse_conv_bn),
                              ('channels-last', args.channels_last)) if on
    ]
    where = device if device == 'cuda' else \
        f'cpu, {torch.get_num_threads()} threads'
    print(f'{args.config}: {result["fps"]:.2f} fps, {ms_per_image:.1f} '
          f'ms/image over {args.num_images} images after {args.warmup} '
          f'warm-up ({where}, batch 1{", " if options else ""}'
          f'{", ".join(options)}); peak memory {memory:.1f} MB '
          f'({memory_kind}); {shape_note}; ' +
          ('random weights, no checkpoint' if args.checkpoint is
           None else f'weights {args.checkpoint}'))
    if args.fuse_conv_bn:
        print(f'fused {fused} BatchNorm layers into convs ({unfused} left)')
    print(f'written to {path}')


if __name__ == '__main__':
    run_tool(main)

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

The model is timed in the form asked for, made by
``projects/res2net/deploy.py`` (the form ``test.py --deploy`` measures the
AP of): ``--fuse-conv-bn`` folds each eval-mode BatchNorm into the conv
before it (Res2Net's split convs' BNs included), ``--channels-last`` runs
the model and each preprocessed batch in ``torch.channels_last`` (mmcv's
ops, which read NCHW only, excepted), ``--deploy`` is both, and
``--compile`` compiles the backbone and neck with ``torch.compile``. Each
changes the detections by float rounding only.

``--against-backbone resnet`` (or ``mmdet-res2net``) also builds the same
detector with mmdet's ResNet (or mmdet's own Res2Net) of the same depth in
place of ``Res2NetBackbone``, in the same form, and times the two
interleaved, image by image in alternating order, so that their fps ratio
comes from one run. The comparison detector has random weights; the peak
memory is then that of the process holding both.

A detector with random weights (no checkpoint, or the comparison one) has
its BN statistics calibrated on the first test image
(``projects/res2net/speed.py``): without that its features, and with them
the proposals and NMS work after the backbone, depend on how its
architecture grows random activations, not on its speed.

The results go to ``WORK_DIR/benchmark.json``. Without a checkpoint the
weights are random: the speed is still the network's, but post-processing
runs on meaningless detections.

Example:
    python tools/analysis_tools/benchmark.py \
        configs/faster_rcnn_r2_101_fpn_2x.py faster_r2_101.pth --fuse-conv-bn
"""
import argparse
import os.path as osp
import time
from copy import deepcopy
from functools import partial
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.utils import ProgressBar
from torch import nn

from projects.res2net.cli import (add_cfg_options, build_detector, check_data,
                                  load_config, require_file, run_tool,
                                  tool_parser, write_json)
from projects.res2net.deploy import DeployReport, deploy
from projects.res2net.errors import UserError
from projects.res2net.speed import (COUNTERPARTS, add_device_arguments,
                                    calibrate_batch_norms, counterpart,
                                    describe_device, device_of, peak_memory,
                                    rotated, sync)


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
        '--deploy',
        action='store_true',
        help='the deploy form: --fuse-conv-bn and --channels-last')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='compile the backbone and neck with torch.compile (inductor, '
        'freezing); takes minutes on a small CPU')
    parser.add_argument(
        '--against-backbone',
        choices=COUNTERPARTS,
        help='also time the same detector with mmdet\'s ResNet (resnet) or '
        'mmdet\'s Res2Net (mmdet-res2net) as its backbone, interleaved, and '
        'print the fps ratio')
    add_device_arguments(parser, amp_help='float16 autocast (CUDA only)')
    add_cfg_options(parser)
    return parser.parse_args()


def prepare(model: nn.Module,
            device: str = 'cpu',
            fuse: bool = False,
            channels_last: bool = False,
            compile: bool = False) -> Tuple[nn.Module, DeployReport]:
    """Put the model in eval mode on ``device``, in the deploy form asked
    for (:func:`projects.res2net.deploy.deploy`)."""
    model.to(device)
    report = deploy(
        model, fold_bn=fuse, channels_last=channels_last, compile=compile)
    return model, report


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


def time_inference(models: Dict[str, nn.Module],
                   loader: Iterable,
                   device: str,
                   num_images: int,
                   warmup: int,
                   channels_last: bool,
                   amp: bool = False
                   ) -> Tuple[Dict[str, float], Optional[tuple]]:
    """Seconds each model spends in :func:`inference_step` on
    ``num_images`` images after ``warmup`` ones, and the padded input shape
    of the first. Several models get each image in turn, in alternating
    order. ``amp``: under float16 autocast (CUDA)."""
    autocast = torch.autocast('cuda', dtype=torch.float16, enabled=amp)
    batches = _endless(loader)
    totals = {name: 0.0 for name in models}
    names = list(models)
    shape = None
    bar = None
    with torch.no_grad():
        for i in range(warmup + num_images):
            data = next(batches)
            if i == warmup:
                bar = ProgressBar(num_images)
            for name in rotated(names, i):
                sync(device)
                start = time.perf_counter()
                with autocast:
                    results = inference_step(models[name], data, channels_last)
                sync(device)
                if bar is not None:
                    totals[name] += time.perf_counter() - start
                if shape is None:
                    shape = results[0].metainfo.get('batch_input_shape')
            if bar is not None:
                bar.update()
    print()  # end the progress bar's line
    return totals, shape


def work_dir_of(args: argparse.Namespace, cfg: Config) -> str:
    """``--work-dir``, else the config's, else ``./work_dirs/<name>``."""
    if args.work_dir is not None:
        return args.work_dir
    if cfg.get('work_dir') is not None:
        return cfg.work_dir
    return osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])


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
    device = device_of(args)
    check_data(cfg, ['test_dataloader'])
    if cfg.get('env_cfg', {}).get('cudnn_benchmark'):
        torch.backends.cudnn.benchmark = True

    fuse = args.fuse_conv_bn or args.deploy
    channels_last = args.channels_last or args.deploy
    models = {'ours': build_detector(cfg, args.checkpoint)}
    if args.against_backbone:
        other = deepcopy(cfg)
        other.model.backbone = counterpart(cfg.model.backbone,
                                           args.against_backbone)
        models[args.against_backbone] = build_detector(other, None)
    loader = build_test_loader(cfg)
    first = next(_endless(loader))
    for name, model in models.items():
        if name != 'ours' or args.checkpoint is None:
            inputs = model.data_preprocessor(first, False)['inputs']
            calibrate_batch_norms(model, partial(model.extract_feat, inputs))
    reports = {
        name: prepare(model, device, fuse, channels_last, args.compile)[1]
        for name, model in models.items()
    }
    seconds, shape = time_inference(models, loader, device, args.num_images,
                                    args.warmup, channels_last, args.amp)
    memory, memory_kind = peak_memory(device)
    # One value, rounded once: what is printed is what is stored.
    memory = round(memory, 1)

    ms_per_image = 1000 * seconds['ours'] / args.num_images
    shape_note = f'test pipeline {resize_note(cfg)}'
    if shape is not None:
        shape_note += f'; first input padded to {shape[0]}x{shape[1]}'
    against = None
    if args.against_backbone:
        theirs = seconds[args.against_backbone]
        against = dict(
            backbone=args.against_backbone,
            fps=args.num_images / theirs,
            ms_per_image=1000 * theirs / args.num_images,
            fps_ratio=theirs / seconds['ours'])
    result = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        device=device,
        hardware=describe_device(device),
        batch_size=1,
        input_shape=list(shape) if shape is not None else None,
        num_images=args.num_images,
        warmup=args.warmup,
        fps=args.num_images / seconds['ours'],
        ms_per_image=ms_per_image,
        peak_memory_mb=memory,
        memory_kind=memory_kind,
        fuse_conv_bn=fuse,
        channels_last=channels_last,
        compile=args.compile,
        amp=args.amp,
        against=against,
        shape_note=shape_note)
    path = osp.join(work_dir_of(args, cfg), 'benchmark.json')
    write_json(path, result)

    forms = (('fused conv-bn', fuse), ('channels-last', channels_last),
             ('compiled', args.compile), ('float16 autocast', args.amp))
    options = [name for name, on in forms if on]
    print(f'{args.config}: {result["fps"]:.2f} fps, {ms_per_image:.1f} '
          f'ms/image over {args.num_images} images after {args.warmup} '
          f'warm-up ({result["hardware"]}, batch 1{", " if options else ""}'
          f'{", ".join(options)}); peak memory {memory:.1f} MB '
          f'({memory_kind}{", both detectors" if against else ""}); '
          f'{shape_note}; ' +
          ('random weights, no checkpoint' if args.checkpoint is
           None else f'weights {args.checkpoint}'))
    if reports['ours'].summary():
        print(reports['ours'].summary())
    if against:
        print(f'against the same detector with {args.against_backbone} '
              f'(random weights), interleaved: {against["fps"]:.2f} fps, '
              f'{against["ms_per_image"]:.1f} ms/image; fps ratio ours / '
              f'{args.against_backbone}: {against["fps_ratio"]:.2f}')
    print(f'written to {path}')


if __name__ == '__main__':
    run_tool(main)

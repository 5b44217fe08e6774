# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Training-step speed and peak memory of a Res2Net detector, against the
same detector on mmdet's own backbones.

Builds the config's detector (its backbone a ``Res2NetBackbone``) and the
same detector with mmdet's ``Res2Net`` of the same scales and width, and
with mmdet's ``ResNet`` of the same depth (``--against``), all with random
weights (no download), BN statistics calibrated on the batch (so that all
work on normalised features, see ``projects/res2net/speed.py``), and the
config's optimizer at learning rate 0 (so
that the weights, and with them each step's work, stay the same), and
times mmengine's ``model.train_step``: data preprocessing, forward,
losses, backward and the optimizer step, on one synthetic batch
(``--batch`` images of ``--size`` with random boxes, from
``mmdet.testing.demo_mm_inputs``), the models in turn, ``--repeats`` times
in a rotating order (``projects/res2net/speed.py``).
``--with-cp`` adds ours with activation checkpointing.

Peak memory: each model runs alone in a fresh process for it
(``--warmup`` + 2 steps), since in this one the other models' weights and
optimizer states are resident too (and on the CPU the peak resident set
size is the whole process's); the peak is counted from the model's first
step: weights, optimizer state, activations and, on the CPU, the
libraries' resident memory, the same for all (``cpu_max_rss``); on CUDA
``torch.cuda.max_memory_allocated`` (``cuda_max_allocated``).
Only ratios from one run mean anything: CPU timings move by ±15% between
runs.

Example:
    python tools/analysis_tools/benchmark_train.py \\
        configs/faster_rcnn_r2_101_fpn_2x.py --size 320 320 --batch 2
"""
import argparse
import json
import subprocess
import sys
from copy import deepcopy
from typing import Callable, Dict, List, Tuple

import torch
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.utils import ProgressBar

from projects.res2net.cli import (add_cfg_options, build_detector, load_config,
                                  run_tool, tool_parser, write_json)
from projects.res2net.speed import (COUNTERPARTS, add_device_arguments,
                                    add_timing_arguments,
                                    calibrate_batch_norms,
                                    check_timing_arguments, counterpart,
                                    describe_device, interleaved_seconds,
                                    medians, peak_memory, reset_peak_memory)

OURS, OURS_CP = 'ours', 'ours with_cp'


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(
        'Time the training step (forward, backward, optimizer step) of a '
        "Res2Net detector against the same detector on mmdet's Res2Net and "
        'ResNet, interleaved; peak memory of each',
        'python tools/analysis_tools/benchmark_train.py '
        'configs/faster_rcnn_r2_101_fpn_2x.py --size 320 320 --batch 2')
    parser.add_argument(
        'config', help='a config whose backbone is '
        'Res2NetBackbone')
    add_timing_arguments(
        parser, size=(320, 320), batch=2, repeats=7, warmup=2, what='steps')
    parser.add_argument(
        '--against',
        nargs='*',
        choices=COUNTERPARTS,
        default=list(COUNTERPARTS),
        help='the backbones to compare with (default: both)')
    parser.add_argument(
        '--with-cp',
        action='store_true',
        help='also time ours with activation checkpointing (with_cp=True)')
    add_device_arguments(
        parser,
        amp_help="mixed precision (mmengine's AmpOptimWrapper; CUDA only)")
    parser.add_argument(
        '--no-memory',
        action='store_true',
        help='skip the peak-memory runs (one process per model)')
    parser.add_argument('--out', help='also write the results to this JSON')
    add_cfg_options(parser)
    # Internal: measure one model's peak memory in this (fresh) process.
    parser.add_argument('--memory-of', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def model_configs(cfg: Config, args: argparse.Namespace) -> Dict[str, Config]:
    """The detectors compared, by name: ours, then each counterpart."""
    backbone = dict(cfg.model.backbone, init_cfg=None)
    found = {}
    for name in [OURS] + ([OURS_CP] if args.with_cp else []) + args.against:
        model_cfg = deepcopy(cfg)
        if name == OURS:
            model_cfg.model.backbone = backbone
        elif name == OURS_CP:
            model_cfg.model.backbone = dict(backbone, with_cp=True)
        else:
            model_cfg.model.backbone = counterpart(backbone, name)
        found[name] = model_cfg
    return found


def synthetic_batch(cfg: Config, args: argparse.Namespace,
                    device: str) -> dict:
    """A batch of random images and boxes (and masks, and a semantic map,
    where the heads train on them)."""
    roi_head = cfg.model.get('roi_head', {})
    head = roi_head.get('bbox_head', {})
    head = head[0] if isinstance(head, list) else head
    torch.manual_seed(0)
    return demo_mm_inputs(
        batch_size=args.batch,
        image_shapes=[(3, *args.size)] * args.batch,
        num_items=[5] * args.batch,
        num_classes=head.get('num_classes', 80),
        with_mask='mask_head' in roi_head,
        with_semantic='semantic_head' in roi_head,
        device=device)


def training_step(cfg: Config, device: str,
                  batch: dict) -> Callable[[], object]:
    """One of ``model.train_step`` on ``batch``, ready to call."""
    model = build_detector(cfg, None).to(device)
    inputs = model.data_preprocessor(batch, True)['inputs']
    calibrate_batch_norms(model, lambda: model.extract_feat(inputs))
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)

    def run():
        return model.train_step(batch, optim_wrapper)

    return run


def memory_in_child(args: argparse.Namespace, name: str) -> Tuple[float, str]:
    """Peak memory of ``name`` alone, from a fresh process running this
    tool with ``--memory-of``."""
    argv = [sys.executable, __file__] + sys.argv[1:] + ['--memory-of', name]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f'the memory run of {name} failed:\n'
                           f'{result.stderr[-2000:]}')
    found = json.loads(result.stdout.strip().splitlines()[-1])
    return round(found['peak_memory_mb'], 1), found['memory_kind']


def main() -> None:
    args = parse_args()
    device = check_timing_arguments(args)
    cfg = load_config(args.config, args.cfg_options)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
    # Weights that do not move: every step does the same work (proposals,
    # NMS), while the optimizer's arithmetic still runs.
    cfg.optim_wrapper.optimizer.lr = 0.0
    configs = model_configs(cfg, args)  # also checks the backbone's type
    batch = synthetic_batch(cfg, args, device)

    if args.memory_of:
        run = training_step(configs[args.memory_of], device, batch)
        reset_peak_memory(device)  # count training, not the imports
        for _ in range(args.warmup + 2):
            run()
        memory, kind = peak_memory(device)
        print(json.dumps(dict(peak_memory_mb=memory, memory_kind=kind)))
        return

    runs = {
        name: training_step(model_cfg, device, batch)
        for name, model_cfg in configs.items()
    }
    bar = ProgressBar(args.repeats * len(runs), file=sys.stdout)
    seconds = medians(
        interleaved_seconds(
            runs, device, args.repeats, warmup=args.warmup,
            on_step=bar.update))
    print()  # end the progress bar's line

    # Rounded once: what is printed is what is stored.
    memory = {} if args.no_memory else {
        name: memory_in_child(args, name)
        for name in runs
    }

    results: List[dict] = []
    lines = [
        '| detector backbone | median ms per step | vs ours | peak memory MB '
        '| vs ours |', '|---|---|---|---|---|'
    ]
    for name in runs:
        mb = memory[name][0] if memory else None
        result = dict(
            backbone=name,
            median_ms=1000 * seconds[name],
            vs_ours=seconds[name] / seconds[OURS],
            peak_memory_mb=mb,
            memory_vs_ours=mb / memory[OURS][0] if mb else None)
        results.append(result)
        memory_cells = (f'{mb:.1f} | {result["memory_vs_ours"]:.2f}'
                        if mb else '– | –')
        lines.append(f'| {name} | {result["median_ms"]:.1f} | '
                     f'{result["vs_ours"]:.2f} | {memory_cells} |')
    where = describe_device(device)
    kind = memory[OURS][1] if memory else 'not measured'
    print(f'{args.config}: train_step (preprocess, forward, backward, '
          f'optimizer step), {args.batch} images of {args.size[0]}x'
          f'{args.size[1]}, random weights; {where}'
          f'{", AMP" if args.amp else ""}; median of {args.repeats} '
          f'interleaved steps; memory: {kind}')
    print('\n'.join(lines))
    if args.out:
        write_json(
            args.out,
            dict(
                config=args.config,
                device=where,
                amp=args.amp,
                batch=args.batch,
                size=list(args.size),
                repeats=args.repeats,
                memory_kind=kind,
                results=results))
        print(f'written to {args.out}')


if __name__ == '__main__':
    run_tool(main)

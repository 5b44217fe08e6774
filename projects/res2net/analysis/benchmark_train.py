# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Training-step speed and peak memory of a Res2Net detector, against the
same detector on mmdet's own backbones.

What ``tools/analysis_tools/benchmark_train.py`` measures. It builds the
config's detector (its backbone a ``Res2NetBackbone``) and the
same detector with mmdet's ``Res2Net`` of the same scales and width, and
with mmdet's ``ResNet`` of the same depth (``--against``), all with random
weights (no download), BN statistics calibrated on the batch (so that all
work on normalised features, see ``projects/res2net/analysis/speed.py``),
and the config's optimizer at learning rate 0 (so
that the weights, and with them each step's work, stay the same), and
times mmengine's ``model.train_step``: data preprocessing, forward,
losses, backward and the optimizer step, on one synthetic batch
(``--batch`` images of ``--size`` with random boxes, from
``mmdet.testing.demo_mm_inputs``), the models in turn, ``--repeats`` times
in a rotating order (``projects/res2net/analysis/speed.py``).
``--with-cp`` adds ours with activation checkpointing.

Peak memory: each model runs alone in a fresh process for it
(``--warmup`` + 2 steps), since in this one the other models' weights and
optimizer states are resident too (and on the CPU the peak resident set
size is the whole process's); the peak is counted from the model's first
step: weights, optimizer state, activations and, on the CPU, the
libraries' resident memory, the same for all (``cpu_max_rss``); on CUDA
``torch.cuda.max_memory_allocated`` (``cuda_max_allocated``). The fresh
process is the tool itself, run again with its arguments and the hidden
``--memory-of NAME`` (:func:`memory_command`).
Only ratios from one run mean anything: CPU timings move by ±15% between
runs.

Example:
    python tools/analysis_tools/benchmark_train.py \\
        configs/faster_rcnn_r2_101_fpn_2x.py --size 320 320 --batch 2
"""
import json
import subprocess
import sys
from copy import deepcopy
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.utils import ProgressBar

from ..engine.cli import build_detector
from ..paths import TOOLS_DIR
from .speed import (calibrate_batch_norms, counterpart, interleaved_seconds,
                    medians, peak_memory, reset_peak_memory)

OURS, OURS_CP = 'ours', 'ours with_cp'
# The tool that measures one model's memory when run with --memory-of.
TOOL = TOOLS_DIR / 'analysis_tools' / 'benchmark_train.py'


def configure_training(cfg: Config, *, amp: bool) -> Config:
    """The config's optimizer at learning rate 0, AMP's wrapper if asked.

    Weights that do not move: every step does the same work (proposals,
    NMS), while the optimizer's arithmetic still runs. Changes ``cfg`` in
    place and returns it.
    """
    if amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.optimizer.lr = 0.0
    return cfg


def model_configs(cfg: Config, *, with_cp: bool,
                  against: Sequence[str]) -> Dict[str, Config]:
    """The detectors compared, by name: ours (and ours with activation
    checkpointing, where ``with_cp``), then each counterpart of
    ``against``.

    Raises:
        UserError: The config's backbone is not a ``Res2NetBackbone``.
    """
    backbone = dict(cfg.model.backbone, init_cfg=None)
    found = {}
    for name in [OURS] + ([OURS_CP] if with_cp else []) + list(against):
        model_cfg = deepcopy(cfg)
        if name == OURS:
            model_cfg.model.backbone = backbone
        elif name == OURS_CP:
            model_cfg.model.backbone = dict(backbone, with_cp=True)
        else:
            model_cfg.model.backbone = counterpart(backbone, name)
        found[name] = model_cfg
    return found


def synthetic_batch(cfg: Config, *, batch: int, size: Sequence[int],
                    device: str) -> dict:
    """A batch of random images and boxes (and masks, and a semantic map,
    where the heads train on them), so that no dataset is needed."""
    roi_head = cfg.model.get('roi_head', {})
    head = roi_head.get('bbox_head', {})
    head = head[0] if isinstance(head, list) else head
    torch.manual_seed(0)
    return demo_mm_inputs(
        batch_size=batch,
        image_shapes=[(3, *size)] * batch,
        num_items=[5] * batch,
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


def time_training_steps(configs: Mapping[str,
                                         Config], device: str, batch: dict, *,
                        repeats: int, warmup: int) -> Dict[str, float]:
    """Median seconds of each detector's training step on ``batch`` over
    ``repeats`` interleaved rounds, after ``warmup`` untimed ones; a
    progress bar meanwhile.

    Args:
        configs: The detectors by name (:func:`model_configs`); the result
            keeps their order.
        device: Where they train.
        batch: One batch (:func:`synthetic_batch`), the same for all.
        repeats: Timed steps of each.
        warmup: Untimed steps of each first.
    """
    runs = {
        name: training_step(model_cfg, device, batch)
        for name, model_cfg in configs.items()
    }
    bar = ProgressBar(repeats * len(runs), file=sys.stdout)
    seconds = medians(
        interleaved_seconds(
            runs, device, repeats, warmup=warmup, on_step=bar.update))
    print()  # end the progress bar's line
    return seconds


def peak_memory_alone(cfg: Config, device: str, batch: dict, *,
                      steps: int) -> Tuple[float, str]:
    """Peak memory of ``steps`` training steps of one detector, counted
    from its first step (weights, optimizer state, activations; not the
    imports), and its kind (``speed.peak_memory``'s). Meant for a fresh
    process that holds this detector alone."""
    run = training_step(cfg, device, batch)
    reset_peak_memory(device)  # count training, not the imports
    for _ in range(steps):
        run()
    return peak_memory(device)


def memory_command(name: str, argv: Sequence[str]) -> List[str]:
    """The command that measures ``name``'s memory in a fresh process: the
    tool again, with its arguments ``argv`` and ``--memory-of NAME``."""
    return [sys.executable, str(TOOL), *argv, '--memory-of', name]


def memory_in_child(name: str, argv: Sequence[str]) -> Tuple[float, str]:
    """Peak memory of ``name`` alone, from a fresh process running the
    tool with ``--memory-of`` (:func:`memory_command`), rounded once: what
    is printed is what is stored.

    Args:
        name: A key of :func:`model_configs`.
        argv: The tool's own arguments (``sys.argv[1:]``).

    Raises:
        RuntimeError: The child failed; its stderr's end is in the message.
    """
    result = subprocess.run(
        memory_command(name, argv), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f'the memory run of {name} failed:\n'
                           f'{result.stderr[-2000:]}')
    found = json.loads(result.stdout.strip().splitlines()[-1])
    return round(found['peak_memory_mb'], 1), found['memory_kind']


def train_table(
    seconds: Mapping[str, float],
    memory: Optional[Mapping[str, Tuple[float, str]]] = None
) -> Tuple[str, List[dict]]:
    """The markdown table, and its rows as dicts (what ``--out`` writes).

    Args:
        seconds: Median seconds per step, by model name, ``OURS`` among
            them; the rows follow its order.
        memory: Peak MB and its kind by name, or empty / None when not
            measured (then the memory cells are dashes).
    """
    results: List[dict] = []
    lines = [
        '| detector backbone | median ms per step | vs ours | peak memory MB '
        '| vs ours |', '|---|---|---|---|---|'
    ]
    for name in seconds:
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
    return '\n'.join(lines), results

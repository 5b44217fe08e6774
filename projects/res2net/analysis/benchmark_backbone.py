# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Backbone latency: ours against the networks they replace.

What ``tools/analysis_tools/benchmark_backbone.py`` measures. It builds, in
one process, one *lineup* (:func:`lineup`) of backbones with the detector
configs' settings (``configs/_base_/res2net_backbones.py``):

* ``resnet``: mmdet's ``ResNet`` (depth 101 unless asked), mmdet's
  ``Res2Net`` (26w×4s) and ``Res2NetBackbone``;
* ``dla``: ``DLA`` (DLA-60 with its plain bottleneck, the same class
  hierarchy), mmdet's ``ResNet-50``, ``Res2NetDLA`` as Res2Net-DLA-60 and as
  Res2NeXt-DLA-60;

each in up to four modes (on the CPU, ours runs inference on an NCHW input
in channels-last, see ``cpu_channels_last``: in ``nchw`` mode the Res2Net
one is also timed with that off):

* ``nchw``: eager, eval mode, contiguous NCHW, as trained;
* ``channels_last``: the same in ``torch.channels_last``;
* ``deploy``: the deploy form of ``projects/res2net/models/deploy.py``: BN
  folded into the convs, channels-last;
* ``compiled``: the deploy form compiled with ``torch.compile`` (inductor,
  freezing); compiling takes minutes on a small CPU;
* ``int8`` and ``bf16`` (``--precision``, x86 CPUs): the deploy form in
  that precision (``projects/res2net/models/precision.py``): int8
  calibrated on the timed input, bf16 under autocast, both compiled. Their
  outputs are compared with the eager ones by cosine similarity per level
  (rounding, not a bug, makes them differ), and their share of the peak is
  of that precision's own peak: a chain of three 1x1 convs in that
  precision (int8 from end to end, no dequantize between the convs),
  timed in the same rounds beside the same chain in fp32, compiled.

``--with-neck`` times each backbone followed by mmdet's FPN as the detector
configs set it (256 channels, 5 levels): the dense part that the
low precisions replace in a detector.

Each backbone gets random weights, BN statistics calibrated on the input
and random BN affine terms (so that folding changes something), the same
in all its modes, and each deployed
model's outputs are checked against its eager ``nchw`` outputs. The runs
are interleaved (``projects/res2net/analysis/speed.py``): one forward of
each model in turn, ``--repeats`` times, in a rotating order, so that a machine
getting faster or slower during the run affects all alike; the
median of each is reported with its ratio to each baseline of the lineup
in the same mode (ResNet and mmdet's Res2Net; DLA-60 and ResNet-50) and to
the network ours replaces in eager NCHW (mmdet's Res2Net; DLA-60), and the
achieved GFLOP/s (2 FLOPs per multiply-add, counted by
mmengine's ``FlopAnalyzer``) against a dense 1x1 conv's, timed in the same
rounds as the peak the hardware reaches. Only ratios from one run mean
anything: CPU timings move by ±15% between runs.

``--train`` times forward + backward of the model in training mode instead
(no deploy modes). ``--amp`` (CUDA only) runs under float16 autocast.

Example:
    python tools/analysis_tools/benchmark_backbone.py --size 512 512 \\
        --threads 2 --repeats 7 --out backbone_speed.json
"""
import sys
from contextlib import nullcontext
from copy import deepcopy
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config
from mmengine.utils import ProgressBar
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..engine.cli import init_random_weights
from ..errors import UserError
from ..models.deploy import deploy
from ..models.precision import DensePart, in_precision, quantize_int8
from ..paths import REPO_ROOT
from .speed import (calibrate_batch_norms, counterpart, interleaved_seconds,
                    medians)

# The roles a backbone plays in a lineup. ``ours-nchw`` is ours with its
# CPU inference in NCHW: the block alone, without the channels-last switch
# that ``cpu_channels_last`` makes for NCHW inputs.
RESNET, MMDET_R2, OURS, OURS_NCHW = ('resnet', 'mmdet-res2net', 'ours',
                                     'ours-nchw')
DLA60, OURS_NEXT = 'dla60', 'ours-next'
FAMILIES = ('resnet', 'dla')
# Res2NetDLA's arguments that the plain DLA does not take.
_RES2NET_ONLY = ('scales', 'base_width', 'groups')
LOW_PRECISIONS = ('bf16', 'int8')
MODES = ('nchw', 'channels_last', 'deploy', 'compiled') + LOW_PRECISIONS
INFERENCE_ONLY = ('deploy', 'compiled') + LOW_PRECISIONS
# A low-precision model's outputs must point the way the eager ones do:
# cosine similarity per output level at least this. On random weights int8
# rounding compounds over depth (backbone + FPN at 800x1344: R2-50 0.992,
# ResNet-50 0.990, ResNet-101 0.979); a wrong program (a layout, an order)
# lands far below.
MIN_COSINE = 0.9
# Deployed outputs must equal the eager ones within this, relative to the
# largest output value; with an FPN, which sums up to four levels, within
# the second (fp32 compiled R2-50 + FPN at 800x1344: 1.1e-4).
TOLERANCE, NECK_TOLERANCE = 1e-4, 5e-4


class Lineup(NamedTuple):
    """The backbones one table compares.

    Attributes:
        configs: Their configs by role, in table order.
        labels: What the table calls each role.
        baselines: The roles each row's time is divided by, in the same
            mode.
        eager: The role each row's time is also divided by in eager NCHW
            (the network ours replaces, as users run it).
        nchw_only: Roles timed in eager ``nchw`` inference only (ours with
            a switch off: elsewhere the same computation).
        low_precision: Roles timed in the low precisions too: ours and the
            plain networks they are weighed against. mmdet's Res2Net is
            not: its int8 form is no deploy path of this project (with the
            quantizer's defaults its outputs came out at cosine 0.91 to
            fp32 on random weights, against ours' 0.99).
    """

    configs: Dict[str, dict]
    labels: Dict[str, str]
    baselines: Tuple[str, ...]
    eager: str
    nchw_only: Tuple[str, ...]
    low_precision: Tuple[str, ...]

    def ratio_key(self, role: str, nchw: bool = False) -> str:
        """The result key of the ratio to ``role`` (in eager NCHW)."""
        return f'vs_{role.replace("-", "_")}' + ('_nchw' if nchw else '')


class BackboneRun(NamedTuple):
    """One backbone in one mode, ready to run: a row of the speed table.

    Attributes:
        backbone: Its role, a key of the lineup's ``labels``.
        mode: One of ``MODES``.
        run: One timed call: a forward, or forward + backward.
        macs: Multiply-adds of one forward on the whole batch.
    """

    backbone: str
    mode: str
    run: Callable[[], object]
    macs: float


class BackboneTimings(NamedTuple):
    """What :func:`benchmark_backbones` found.

    Attributes:
        runs: The models timed, in table order.
        seconds: Median seconds of each ``(backbone, mode)``, and of the
            peak product under ``(PEAK, '')``.
        peak_gflops: The peak product's GFLOP/s.
        table: The markdown table of :func:`speed_table`.
        results: Its rows as dicts (what ``--out`` writes).
        errors: Each fp32 deployed model's largest relative difference to
            its eager outputs, by ``'<label> <mode>'``.
        cosines: Each low-precision model's smallest cosine similarity to
            its eager outputs (per level), by ``'<label> <mode>'``.
        chain_gops: The GFLOP/s (GOP/s for int8) of the chain of
            :func:`chain_peaks` in each precision timed.
    """

    runs: List[BackboneRun]
    seconds: Dict[Tuple[str, str], float]
    peak_gflops: float
    table: str
    results: List[dict]
    errors: Dict[str, float]
    cosines: Dict[str, float]
    chain_gops: Dict[str, float]


def lineup(family: str, depth: Optional[int] = None) -> Lineup:
    """The backbones compared, as configs with the detector configs'
    settings (``configs/_base_/res2net_backbones.py``), random weights.

    Args:
        family: ``'resnet'``: ``Res2NetBackbone`` against mmdet's ``ResNet``
            and ``Res2Net`` of ``depth`` (default 101); ``'dla'``:
            ``Res2NetDLA`` (Res2Net-DLA-60 and Res2NeXt-DLA-60) against the
            plain ``DLA`` (DLA-60) and mmdet's ``ResNet``-50.
        depth: The ResNet-family depth; DLA-60 has one.

    Raises:
        UserError: An unknown family, or a depth for the DLA one.
    """
    base = Config.fromfile(
        str(REPO_ROOT / 'configs' / '_base_' / 'res2net_backbones.py'))
    if family == 'resnet':
        depth = depth or 101
        ours = dict(base.res2net101_backbone, depth=depth, init_cfg=None)
        return Lineup(
            configs={
                RESNET: counterpart(ours, 'resnet'),
                MMDET_R2: counterpart(ours, 'mmdet-res2net'),
                OURS: ours,
                OURS_NCHW: dict(ours, cpu_channels_last=False),
            },
            labels={
                RESNET: f'mmdet ResNet-{depth}',
                MMDET_R2: f'mmdet Res2Net-{depth}',
                OURS: f'Res2NetBackbone-{depth}',
                OURS_NCHW:
                f'Res2NetBackbone-{depth} (cpu_channels_last=False)',
            },
            baselines=(RESNET, MMDET_R2),
            eager=MMDET_R2,
            nchw_only=(OURS_NCHW, ),
            low_precision=(RESNET, OURS))
    if family == 'dla':
        if depth is not None:
            raise UserError(f'--depth {depth} is for --family resnet; the '
                            'DLA lineup is DLA-60 against ResNet-50')
        ours = dict(base.res2net_dla60_backbone, init_cfg=None)
        plain = {k: v for k, v in ours.items() if k not in _RES2NET_ONLY}
        resnet = dict(base.res2net50_backbone, init_cfg=None)
        return Lineup(
            configs={
                DLA60: dict(plain, type='DLA'),
                RESNET: counterpart(resnet, 'resnet'),
                OURS: ours,
                OURS_NEXT: dict(base.res2next_dla60_backbone, init_cfg=None),
                OURS_NCHW: dict(ours, cpu_channels_last=False),
            },
            labels={
                DLA60: 'DLA-60',
                RESNET: 'mmdet ResNet-50',
                OURS: 'Res2NetDLA-60',
                OURS_NEXT: 'Res2NetDLA-60 (Res2NeXt)',
                OURS_NCHW: 'Res2NetDLA-60 (cpu_channels_last=False)',
            },
            baselines=(DLA60, RESNET),
            eager=DLA60,
            nchw_only=(OURS_NCHW, ),
            low_precision=(DLA60, RESNET, OURS, OURS_NEXT))
    raise UserError(f'no lineup {family!r}: choose one of '
                    f'{", ".join(FAMILIES)}')


def check_modes(modes: Sequence[str], *, train: bool) -> None:
    """Training is timed in the eager modes only.

    Raises:
        UserError: ``train`` with a deploy or compiled mode.
    """
    if train and set(modes) & set(INFERENCE_ONLY):
        raise UserError('--train times training: the deploy and compiled '
                        'modes are for inference; pass --modes nchw '
                        'channels_last')


def _randomise(model: nn.Module, x: Tensor) -> nn.Module:
    """mmdet's random initialisation, BN statistics calibrated on ``x``
    (:func:`~projects.res2net.analysis.speed.calibrate_batch_norms`), and
    random BN affine terms (at their defaults folding would change less)."""
    init_random_weights(model)
    calibrate_batch_norms(model, lambda: model(x))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                n = module.num_features
                module.weight.copy_(1 + torch.randn(n, generator=gen) / 10)
                module.bias.copy_(torch.randn(n, generator=gen) / 10)
    return model


def _outputs(model: nn.Module, x: Tensor) -> List[Tensor]:
    with torch.no_grad():
        return [o.float() for o in model(x)]


def _relative_error(got: Sequence[Tensor], want: Sequence[Tensor]) -> float:
    return max(((g - w).abs().max() / w.abs().max()).item()
               for g, w in zip(got, want))


def _cosine(got: Sequence[Tensor], want: Sequence[Tensor]) -> float:
    return min(
        torch.nn.functional.cosine_similarity(
            g.flatten(), w.flatten(), dim=0).item() for g, w in zip(got, want))


def with_neck(backbone: nn.Module, x: Tensor) -> DensePart:
    """``backbone`` followed by mmdet's FPN as the detector configs set it
    (its input channels read from one forward of ``x``), random weights."""
    backbone.eval()  # (mmdet's ResNet.train returns None: no chaining)
    with torch.no_grad():
        channels = [f.shape[1] for f in backbone(x[:1])]
    neck = MODELS.build(
        dict(type='FPN', in_channels=channels, out_channels=256,
             num_outs=5)).to(x.device)
    init_random_weights(neck)
    return DensePart(backbone, neck)


def low_precision(model: nn.Module, precision: str, x: Tensor) -> nn.Module:
    """The deployed ``model`` in ``precision`` (int8 calibrated on ``x``)."""
    program = quantize_int8(model, [x]) if precision == 'int8' else None
    return in_precision(model, precision, program=program)


def _step(model: nn.Module, x: Tensor, train: bool,
          autocast) -> Callable[[], object]:
    """One timed call: a forward (no grad), or forward + backward."""
    if train:

        def run():
            model.zero_grad(set_to_none=True)
            with autocast():
                loss = sum(o.float().mean() for o in model(x))
            loss.backward()

        return run

    def run():
        with torch.no_grad(), autocast():
            return model(x)

    return run


def build_runs(
    x: Tensor,
    *,
    device: str,
    backbones: Lineup,
    modes: Sequence[str],
    train: bool,
    amp: bool,
    neck: bool = False
) -> Tuple[List[BackboneRun], Dict[str, float], Dict[str, float]]:
    """Every backbone in every mode asked for, each fp32 deployed model's
    largest relative difference to its eager outputs, and each
    low-precision one's smallest cosine similarity to them.

    Args:
        x: The input batch, on ``device``.
        device: Where the models run.
        backbones: The lineup.
        modes: Of ``MODES``; the lineup's ``nchw_only`` roles are built in
            ``nchw`` only.
        train: Forward + backward in training mode, else eval forwards.
        amp: Under float16 autocast (CUDA).
        neck: Each backbone followed by an FPN (:func:`with_neck`).
    """
    register_all_modules()
    autocast = (lambda: torch.autocast('cuda', dtype=torch.float16)) \
        if amp else nullcontext
    runs, errors, cosines = [], {}, {}
    for name, cfg in backbones.configs.items():
        reference = _randomise(MODELS.build(cfg).to(device), x)
        if neck:
            reference = with_neck(reference, x)
        # (mmdet's ResNet.train returns None: no chained calls.)
        reference.eval()
        flops = FlopAnalyzer(reference, (x[:1], ))
        flops.unsupported_ops_warnings(False)
        flops.uncalled_modules_warnings(False)
        macs = flops.total() * len(x)
        reference.train(train)
        want = None if train else _outputs(reference, x)
        for mode in modes:
            if name in backbones.nchw_only and (mode != 'nchw' or train):
                continue  # elsewhere the same computation as OURS
            if mode in LOW_PRECISIONS and name not in backbones.low_precision:
                continue
            model = deepcopy(reference)
            inputs = x
            if mode == 'channels_last':
                model = model.to(memory_format=torch.channels_last)
                inputs = x.contiguous(memory_format=torch.channels_last)
            elif mode in INFERENCE_ONLY:
                deploy(model, compile=mode == 'compiled')
                inputs = x.contiguous(memory_format=torch.channels_last)
                key = f'{backbones.labels[name]} {mode}'
                # Also compiles: outside the timed runs.
                if mode in LOW_PRECISIONS:
                    model = low_precision(model, mode, inputs)
                    cosines[key] = _cosine(_outputs(model, inputs), want)
                else:
                    errors[key] = _relative_error(
                        _outputs(model, inputs), want)
            runs.append(
                BackboneRun(name, mode, _step(model, inputs, train, autocast),
                            macs))
    return runs, errors, cosines


def check_deployed(errors: Dict[str, float],
                   cosines: Optional[Dict[str, float]] = None,
                   *,
                   neck: bool = False) -> None:
    """Stop unless every deployed model computes what its eager one does.

    Raises:
        RuntimeError: An fp32 error above ``TOLERANCE`` (``NECK_TOLERANCE``
            with a ``neck``), or a low-precision cosine below
            ``MIN_COSINE``: a bug, not the user's.
    """
    tolerance = NECK_TOLERANCE if neck else TOLERANCE
    for key, error in errors.items():
        if error > tolerance:
            raise RuntimeError(f'{key}: outputs differ from eager by '
                               f'{error:.1e} (relative), more than '
                               f'{tolerance:.0e}')
    for key, cosine in (cosines or {}).items():
        if cosine < MIN_COSINE:
            raise RuntimeError(f'{key}: outputs at cosine {cosine:.4f} to '
                               f'eager, less than {MIN_COSINE}')


# The dense product whose speed is the "peak" the backbones are held to:
# a 1x1 conv of 1024 channels over a 64x64 channels-last map (the conv
# library's best case on a CPU, whose BLAS may use narrower vector units),
# timed in the same rounds as the backbones.
PEAK = 'matmul peak (1x1 conv, 1024 channels, 64x64)'


def peak_run(device: str) -> Tuple[Callable[[], object], float]:
    """The peak product as a call, and its FLOPs."""
    channels, side = 1024, 64
    x = torch.randn(
        1, channels, side, side,
        device=device).contiguous(memory_format=torch.channels_last)
    w = torch.randn(
        channels, channels, 1, 1,
        device=device).contiguous(memory_format=torch.channels_last)

    def run():
        with torch.no_grad():
            return torch.nn.functional.conv2d(x, w)

    return run, 2.0 * channels * channels * side * side


# The chain whose speed is each precision's peak: three 1x1 convs of 512
# channels, each followed by a ReLU, over a 96x96 map (the smallest the
# int8 export takes). In int8 the convs pass int8 to each other.
CHAIN = 'chain peak (three 1x1 convs, 512 channels, 96x96)'
CHAIN_CONVS, CHAIN_CHANNELS, CHAIN_SIDE = 3, 512, 96


class _Chain(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(*[
            layer for _ in range(CHAIN_CONVS)
            for layer in (nn.Conv2d(CHAIN_CHANNELS, CHAIN_CHANNELS, 1),
                          nn.ReLU())
        ])

    def forward(self, x: Tensor) -> Tuple[Tensor]:
        return (self.convs(x), )


def chain_peaks(precisions: Sequence[str]
                ) -> Dict[str, Tuple[Callable, float]]:
    """The chain of ``CHAIN`` in fp32 (compiled) and in each precision of
    ``precisions`` (CPU), as calls, and its FLOPs (2 per multiply-add)."""
    torch.manual_seed(0)
    chain = _Chain().eval().to(memory_format=torch.channels_last)
    x = torch.rand(1, CHAIN_CHANNELS, CHAIN_SIDE,
                   CHAIN_SIDE).contiguous(memory_format=torch.channels_last)
    flops = 2.0 * CHAIN_CONVS * CHAIN_CHANNELS**2 * CHAIN_SIDE**2
    models = {'fp32': deepcopy(chain)}
    deploy(models['fp32'], compile=True)
    for precision in precisions:
        models[precision] = low_precision(deepcopy(chain), precision, x)
    found = {}
    for precision, model in models.items():
        run = _step(model, x, False, nullcontext)
        run()  # compiles: outside the timed runs
        found[precision] = run, flops
    return found


def time_runs(runs: Sequence[BackboneRun],
              peak: Callable[[], object],
              device: str,
              *,
              repeats: int,
              warmup: int,
              chains: Optional[Dict[str, Callable]] = None
              ) -> Dict[Tuple[str, str], float]:
    """Median seconds of each run (and of the peak product, under
    ``(PEAK, '')``, and of each chain of ``chains``, under ``(CHAIN,
    precision)``) over ``repeats`` interleaved rounds."""
    calls = {(run.backbone, run.mode): run.run for run in runs}
    calls[PEAK, ''] = peak
    for precision, chain in (chains or {}).items():
        calls[CHAIN, precision] = chain
    bar = ProgressBar(repeats * len(calls), file=sys.stdout)
    times = interleaved_seconds(
        calls, device, repeats, warmup=warmup, on_step=bar.update)
    print()  # end the progress bar's line
    return medians(times)


# The kinds of op a profile is summed into, by the name of the aten op
# (first match wins); convolutions are split by kernel size.
OP_KINDS = (
    ('BN', ('batch_norm', )),
    ('ReLU, add, mul', ('relu', 'add', 'mul', 'threshold')),
    ('concatenation', ('cat', )),
    ('copies', ('copy_', 'contiguous', 'clone', 'to_dense', 'reorder')),
    ('pooling', ('pool', )),
)
CONV_OPS = ('conv', )  # in the name: mkldnn, cudnn, slow_conv2d, backward


def op_kind(name: str, shapes: list) -> str:
    """The kind of a profiled op, for :func:`profile_runs`."""
    if any(word in name for word in CONV_OPS):
        # (input, weight, ...); a backward gets (grad, input, weight, ...)
        at = 2 if 'backward' in name else 1
        weight = shapes[at] if len(shapes) > at else []
        if len(weight) == 4 and weight[2:] == [1, 1]:
            return '1x1 conv'
        return f'{weight[2]}x{weight[3]} conv' if len(weight) == 4 else 'conv'
    for kind, words in OP_KINDS:
        if any(word in name for word in words):
            return kind
    return 'other'


def profile_runs(runs: Sequence[BackboneRun], device: str,
                 labels: Dict[str, str]) -> Dict[str, Dict[str, float]]:
    """Milliseconds of self time per kind of op, for one call of each run.

    The self time of the leaf aten ops, summed by :func:`op_kind`: where a
    network spends its time, e.g. Res2Net's many small 3x3 convs against
    ResNet's few wide ones. One profiled run, so a rough split; the timed
    medians of :func:`time_runs` are the measurement.
    """
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU
                  ] + ([ProfilerActivity.CUDA] if device == 'cuda' else [])
    found = {}
    for run in runs:
        with profile(activities=activities, record_shapes=True) as prof:
            run.run()
        kinds: Dict[str, float] = {}
        for event in prof.key_averages(group_by_input_shape=True):
            ms = (event.self_device_time_total if device == 'cuda' else
                  event.self_cpu_time_total) / 1e3  # from microseconds
            if ms > 0:
                kind = op_kind(event.key, event.input_shapes)
                kinds[kind] = kinds.get(kind, 0.0) + ms
        found[f'{labels[run.backbone]} {run.mode}'] = kinds
    return found


def profile_table(profiles: Dict[str, Dict[str, float]]) -> str:
    """The profiles as a markdown table: one line per model, one column
    per kind of op, in ms."""
    kinds = sorted({k
                    for p in profiles.values()
                    for k in p},
                   key=lambda k: -max(p.get(k, 0) for p in profiles.values()))
    lines = [
        '| model | ' + ' | '.join(kinds) + ' | total |',
        '|---' * (len(kinds) + 2) + '|'
    ]
    for name, kinds_ms in profiles.items():
        cells = [f'{kinds_ms.get(k, 0):.1f}' for k in kinds]
        lines.append(f'| {name} | ' + ' | '.join(cells) +
                     f' | {sum(kinds_ms.values()):.1f} |')
    return '\n'.join(lines)


def speed_table(runs: Sequence[BackboneRun],
                seconds_of: Dict[Tuple[str, str], float],
                *,
                peak: float,
                train: bool,
                backbones: Lineup,
                chain_gops: Optional[Dict[str, float]] = None
                ) -> Tuple[str, List[dict]]:
    """The markdown table, and its rows as dicts.

    Args:
        runs: The rows, in order.
        seconds_of: Median seconds by ``(backbone, mode)``.
        peak: The peak product's GFLOP/s, which ``of_peak`` divides by.
        chain_gops: Each low precision's chain peak, which ``of_peak``
            divides its rows by instead; with it, each row is also divided
            by its own backbone's ``compiled`` time (``vs_compiled``).
        train: Forward + backward were timed: about 3x a forward's FLOPs.
        backbones: The lineup: labels and the baselines of the ratios
            (``vs_<role>`` in the same mode, ``vs_<eager>_nchw``).
    """
    labels, eager = backbones.labels, backbones.eager
    ratios = [(backbones.ratio_key(b), b, None) for b in backbones.baselines]
    ratios.append((backbones.ratio_key(eager, nchw=True), eager, 'nchw'))
    header = [f'vs {labels[b]}'
              for b in backbones.baselines] + [f'vs {labels[eager]} NCHW']
    if chain_gops:
        header.append('vs its fp32 compiled')
    lines = [
        '| backbone | mode | median ms | ' + ' | '.join(header) +
        ' | GFLOP/s | of peak |', '|---' * (len(header) + 5) + '|'
    ]
    results = []
    for run in runs:
        seconds = seconds_of[run.backbone, run.mode]
        flops = 2 * run.macs * (3 if train else 1)  # backward: about 2x
        result = dict(
            backbone=labels[run.backbone],
            mode=run.mode,
            median_ms=1000 * seconds)
        for key, role, mode in ratios:
            result[key] = seconds / seconds_of.get(
                (role, mode or run.mode), float('nan'))
        if chain_gops:
            result['vs_compiled'] = seconds / seconds_of.get(
                (run.backbone, 'compiled'), float('nan'))
        result['gflops_per_s'] = flops / seconds / 1e9
        result['of_peak'] = result['gflops_per_s'] / (chain_gops or {}).get(
            run.mode, peak)
        results.append(result)
        cells = [f'{result[key]:.2f}' for key, _, _ in ratios]
        if chain_gops:
            cells.append(f'{result["vs_compiled"]:.2f}')
        lines.append(f'| {result["backbone"]} | {run.mode} | '
                     f'{result["median_ms"]:.1f} | ' + ' | '.join(cells) +
                     f' | {result["gflops_per_s"]:.1f} | '
                     f'{100 * result["of_peak"]:.0f}% |')
    return '\n'.join(lines), results


def benchmark_backbones(*,
                        device: str,
                        batch: int,
                        size: Sequence[int],
                        backbones: Lineup,
                        modes: Sequence[str],
                        train: bool,
                        amp: bool,
                        repeats: int,
                        warmup: int,
                        neck: bool = False) -> BackboneTimings:
    """Build, check and time every backbone in every mode asked for.

    The input is seeded noise of ``batch`` x 3 x ``size``; the deployed
    models are checked against their eager outputs before any timing, so
    that a wrong fast model is never reported.

    Raises:
        UserError: ``train`` with an inference-only mode, or an input too
            small to calibrate the BN statistics on.
        RuntimeError: A deployed model's outputs off by more than
            ``TOLERANCE``.
    """
    check_modes(modes, train=train)
    torch.manual_seed(0)
    height, width = size
    x = torch.randn(batch, 3, height, width, device=device)

    runs, errors, cosines = build_runs(
        x,
        device=device,
        backbones=backbones,
        modes=modes,
        train=train,
        amp=amp,
        neck=neck)
    check_deployed(errors, cosines, neck=neck)
    peak, peak_flops = peak_run(device)
    low = [m for m in LOW_PRECISIONS if m in modes]
    chains = chain_peaks(low) if low else {}
    seconds = time_runs(
        runs,
        peak,
        device,
        repeats=repeats,
        warmup=warmup,
        chains={
            p: run
            for p, (run, _) in chains.items()
        })
    peak_gflops = peak_flops / seconds[PEAK, ''] / 1e9
    chain_gops = {
        p: flops / seconds[CHAIN, p] / 1e9
        for p, (_, flops) in chains.items()
    }
    text, results = speed_table(
        runs,
        seconds,
        peak=peak_gflops,
        train=train,
        backbones=backbones,
        chain_gops=chain_gops)
    return BackboneTimings(runs, seconds, peak_gflops, text, results, errors,
                           cosines, chain_gops)

# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The dense part of a detector (backbone and neck) in bf16 or int8, on x86
CPUs: the last step of its deploy form (:mod:`.deploy`).

* **int8**: post-training static quantization with PyTorch's x86 path.
  The dense part is captured with ``torch.export`` (image height and width
  dynamic, multiples of 32), the ``torchao`` PT2E ``prepare_pt2e`` inserts
  observers as the x86 inductor quantizer places them, calibration images
  run through it, ``convert_pt2e`` writes the int8 program, and
  ``torch.compile`` with inductor's freezing lowers it to oneDNN's int8
  kernels. What depends on the data (box decoding, NMS, RoI sampling,
  RoIAlign, the RoI heads) stays eager fp32. The program can be saved
  (:func:`save_int8`) and loaded without the calibration data
  (:func:`load_int8`); its record names the checkpoint (sha256) and model
  it was made from, and a program made from others is refused.
* **bf16**: the dense part runs under ``torch.autocast`` to bf16, compiled
  with freezing, its outputs cast back to fp32 for the heads.

Both replace the detector's ``backbone`` with one module that computes
backbone and neck, and its ``neck`` with ``nn.Identity``: mmdet's
``extract_feat`` calls them in that order. ``torchao`` is imported only
when int8 is asked for.
"""
import hashlib
import json
import logging
import os
import zipfile
from contextlib import contextmanager
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

import torch
from torch import Tensor, nn

from ..errors import UserError
from .deploy import is_mmcv_op

PRECISIONS = ('fp32', 'bf16', 'int8')
# What torch.export.save's extra files hold the record in.
RECORD_FILE = 'res2net_int8.json'
# The export's height and width: multiples of 32, from 96 to 4096 pixels
# (at 64 a detector's coarsest level would be 1 pixel, which torch.export
# specialises).
STRIDE, MIN_STEPS, MAX_STEPS = 32, 3, 128


def cpu_has(precision: str) -> bool:
    """Whether this CPU has the dot-product instructions of ``precision``:
    VNNI (AVX512_VNNI or AMX) for int8, AVX512_BF16 or AMX for bf16."""
    amx = torch.cpu._is_amx_tile_supported()
    if precision == 'int8':
        return torch.cpu._is_vnni_supported() or amx
    if precision == 'bf16':
        return torch.cpu._is_avx512_bf16_supported() or amx
    return True


def cpu_note(precision: str) -> Optional[str]:
    """One line when this CPU lacks ``precision``'s instructions, else None.

    int8 still runs there, on oneDNN's AVX2 int8 kernels; bf16 is emulated,
    many times slower than fp32 (docs/speed.md has both measured).
    """
    if cpu_has(precision):
        return None
    if precision == 'int8':
        return ('this CPU has no VNNI (AVX512_VNNI or AMX): int8 runs on '
                "oneDNN's AVX2 int8 kernels, slower than on a CPU with VNNI "
                '(docs/speed.md)')
    return ('this CPU has no AVX512_BF16 or AMX: bf16 is emulated here and '
            'runs many times slower than fp32 (docs/speed.md)')


class DensePart(nn.Module):
    """A detector's backbone followed by its neck (if any): what the low
    precisions replace, as one module."""

    def __init__(self, backbone: nn.Module, neck: Optional[nn.Module]) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        feats = self.backbone(x)
        return tuple(self.neck(feats) if self.neck is not None else feats)


def dense_part(detector: nn.Module) -> DensePart:
    """The detector's backbone and neck as one :class:`DensePart`."""
    return DensePart(detector.backbone, getattr(detector, 'neck', None))


def _install(detector: nn.Module, module: nn.Module) -> None:
    detector.backbone = module
    if getattr(detector, 'neck', None) is not None:
        detector.neck = nn.Identity()


class Bf16Dense(nn.Module):
    """The dense part under bf16 autocast, compiled with freezing; fp32
    outputs."""

    def __init__(self, dense: nn.Module) -> None:
        super().__init__()
        self.dense = dense
        # Not a submodule: the same weights, once in the state dict.
        object.__setattr__(self, 'compiled', torch.compile(dense))

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), _freezing(), torch.autocast(
                'cpu', dtype=torch.bfloat16):
            out = self.compiled(x)
        return tuple(o.float() for o in out)


class Int8Dense(nn.Module):
    """An int8 program of the dense part, compiled with freezing at its
    first call (and once more when the image size first changes: then with
    dynamic height and width)."""

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program
        object.__setattr__(self, 'compiled', torch.compile(program))

    def train(self, mode: bool = True) -> 'Int8Dense':
        """Only the flag: an exported program runs as it was exported (in
        inference) and refuses ``train()``."""
        self.training = mode
        return self

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), _freezing():
            return tuple(self.compiled(x))


@contextmanager
def _freezing() -> Iterator[None]:
    # Inductor's freezing folds the weights into constants and packs them
    # for oneDNN; the int8 weight packing needs it set for the whole
    # compilation (as torch.compile's options it comes too late).
    with torch._inductor.config.patch(freezing=True):
        yield


@contextmanager
def _quiet_torchao() -> Iterator[None]:
    """Import torchao without its lines about CUDA kernels that a CPU-only
    torch cannot load (harmless: the x86 path uses torch's own oneDNN
    ops)."""
    loggers = [
        logging.getLogger(n) for n in ('torchao', 'torch.utils._pytree')
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _export(dense: nn.Module, example: Tensor):
    steps = torch.export.Dim('steps_h', min=MIN_STEPS, max=MAX_STEPS), \
        torch.export.Dim('steps_w', min=MIN_STEPS, max=MAX_STEPS)
    return torch.export.export(
        dense, (example, ),
        dynamic_shapes={'x': {
            2: STRIDE * steps[0],
            3: STRIDE * steps[1]
        }})


def check_quantizable(dense: nn.Module) -> None:
    """Refuse a dense part that the export cannot capture.

    Raises:
        UserError: It holds mmcv's compiled ops (deformable convs).
    """
    ops = sorted({type(m).__name__ for m in dense.modules() if is_mmcv_op(m)})
    if ops:
        raise UserError(
            f'the backbone or neck holds mmcv ops ({", ".join(ops)}) that '
            'torch.export cannot capture: int8 covers detectors without '
            'deformable convs; test this one with --precision fp32')


def quantize_int8(dense: nn.Module, calibration: Iterable[Tensor]):
    """The int8 program of ``dense``, calibrated on ``calibration``.

    Args:
        dense: An eval-mode fp32 module of one image tensor (N, 3, H, W),
            H and W multiples of 32 (BN folded or not: the quantizer folds
            what is left).
        calibration: Input tensors as the detector's data preprocessor
            gives them (normalised, padded to 32).

    Returns:
        The exported int8 program (``torch.export.ExportedProgram``), to run
        through :class:`Int8Dense` or to save with :func:`save_int8`.

    Raises:
        UserError: ``calibration`` is empty, or ``dense`` cannot be exported
            (:func:`check_quantizable`).
    """
    check_quantizable(dense)
    batches = iter(calibration)
    first = next(batches, None)
    if first is None:
        raise UserError('int8 calibration got no images; check the '
                        "config's train dataset")
    with _quiet_torchao():
        from torchao.quantization.pt2e.quantize_pt2e import (convert_pt2e,
                                                             prepare_pt2e)
        from torchao.quantization.pt2e.quantizer import \
            x86_inductor_quantizer as x86
    quantizer = x86.X86InductorQuantizer().set_global(
        x86.get_default_x86_inductor_quantization_config())
    with torch.no_grad():
        captured = _export(dense.eval(), first).module()
        observed = prepare_pt2e(captured, quantizer)
        observed(first)
        for batch in batches:
            observed(batch)
        program = convert_pt2e(observed)
        # Exported again: the form torch.export.save writes and a later run
        # loads, with the same dynamic height and width.
        return _export(program, first)


def file_sha256(path: str) -> str:
    """The sha256 of a file, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def model_digest(model_cfg: Any) -> str:
    """A short digest of a config's ``model`` dict: which network."""
    text = json.dumps(model_cfg, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_int8(program, path: str, record: Dict[str, Any]) -> None:
    """Write the int8 program and its record to ``path``, whole or not at
    all (a temporary file renamed)."""
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        torch.export.save(
            program, tmp, extra_files={RECORD_FILE: json.dumps(record)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_record(path: str) -> Dict[str, Any]:
    """The record of an int8 program file, without loading the program.

    Raises:
        UserError: The file is missing or is not such a program.
    """
    if not os.path.isfile(path):
        raise UserError(f'int8 program not found: {path}; write it with '
                        'tools/deployment/quantize.py CONFIG CHECKPOINT')
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist()
                        if n.endswith(f'extra/{RECORD_FILE}'))
            return json.loads(archive.read(name))
    except (zipfile.BadZipFile, StopIteration, ValueError):
        raise UserError(f'{path} is not an int8 program of this project; '
                        'write one with tools/deployment/quantize.py '
                        'CONFIG CHECKPOINT') from None


def check_record(record: Dict[str, Any], path: str, *, checkpoint: str,
                 sha256: str, model: str) -> None:
    """Refuse a program made from another checkpoint or model.

    Raises:
        UserError: One line naming both.
    """
    if record.get('checkpoint_sha256') != sha256:
        raise UserError(
            f'{path} was made from {record.get("checkpoint")} (sha256 '
            f'{str(record.get("checkpoint_sha256"))[:12]}), not from '
            f'{checkpoint} (sha256 {sha256[:12]}); quantize this checkpoint '
            'with tools/deployment/quantize.py')
    if record.get('model_digest') != model:
        raise UserError(
            f'{path} was made for the model of {record.get("config")}, not '
            'this config\'s; quantize with tools/deployment/quantize.py and '
            'this config')


def check_int8_program(path: str, model_cfg: Any,
                       checkpoint: str) -> Dict[str, Any]:
    """The record of the program at ``path``, after checking that it was
    made from ``checkpoint`` and the model ``model_cfg``.

    Raises:
        UserError: A missing or foreign file, or one made from another
            checkpoint or model (:func:`check_record`).
    """
    record = read_record(path)
    check_record(
        record,
        path,
        checkpoint=checkpoint,
        sha256=file_sha256(checkpoint),
        model=model_digest(model_cfg))
    return record


def load_int8(path: str):
    """The int8 program saved at ``path`` (checked with
    :func:`check_record` first)."""
    with _quiet_torchao():
        import torchao.quantization.pt2e  # noqa: F401  (its ops' kernels)
    return torch.export.load(path)


def int8_record(*, config: str, checkpoint: str, model_cfg: Any,
                calib_images: int, calib_data: str) -> Dict[str, Any]:
    """What an int8 program file records of how it was made."""
    return dict(
        precision='int8',
        config=config,
        checkpoint=checkpoint,
        checkpoint_sha256=file_sha256(checkpoint),
        model_digest=model_digest(model_cfg),
        calib_images=calib_images,
        calib_data=calib_data,
        torch=torch.__version__)


def precision_plan(precision: str, *, device: str,
                   force: bool) -> Tuple[str, Optional[str]]:
    """The precision a tool runs when ``precision`` is asked for, and the
    line to print first (or None).

    bf16 on a CPU without bf16 instructions runs fp32 unless ``force``;
    int8 without VNNI runs, with its note (measured faster than fp32 there
    too, docs/speed.md).

    Raises:
        UserError: bf16 or int8 on a CUDA device.
    """
    if precision not in PRECISIONS:
        raise UserError(f'precision {precision!r}: use one of '
                        f'{", ".join(PRECISIONS)}')
    if precision == 'fp32':
        return precision, None
    if device != 'cpu':
        raise UserError(
            f'--precision {precision} is a deploy form for x86 CPUs '
            f'(oneDNN), not {device}: on a GPU test the fp32 form, or run '
            'on the CPU with CUDA_VISIBLE_DEVICES=')
    note = cpu_note(precision)
    if note and precision == 'bf16' and not force:
        return 'fp32', (f'{note}; testing the fp32 form instead '
                        '(--force-precision runs bf16 anyway)')
    return precision, note


def to_precision(detector: nn.Module, precision: str, *, program=None) -> str:
    """Put the detector's dense part in ``precision``, in place.

    Args:
        detector: An eval-mode detector with ``backbone`` (and ``neck``).
        precision: One of :data:`PRECISIONS`; ``fp32`` changes nothing.
        program: For int8 (and only for it), the program of this
            detector's dense part, from :func:`quantize_int8` or
            :func:`load_int8`.

    Returns:
        What was done, for the deploy report.

    Raises:
        UserError: An unknown precision, or int8 without its program.
    """
    if precision not in PRECISIONS:
        raise UserError(f'precision {precision!r}: use one of '
                        f'{", ".join(PRECISIONS)}')
    if (program is None) == (precision == 'int8'):
        raise UserError('an int8 program goes with precision int8, and '
                        f'only with it (precision {precision})')
    if precision == 'fp32':
        return ''
    if precision == 'bf16':
        _install(detector, Bf16Dense(dense_part(detector).eval()))
        return 'backbone and neck in bf16 (autocast, compiled)'
    _install(detector, Int8Dense(program.module()))
    return 'backbone and neck in int8 (PT2E, x86 inductor quantizer)'

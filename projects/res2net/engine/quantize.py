# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The int8 program of a trained detector, written once for later test and
inference runs (``tools/deployment/quantize.py``), and the precision flags
of the tools that run the low-precision forms (``test.py``,
``benchmark.py``)."""
import argparse
import os.path as osp
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config
from torch import nn

from ..errors import UserError
from ..models.deploy import deploy
from ..models.precision import (PRECISIONS, check_int8_program, dense_part,
                                int8_record, load_int8, precision_plan,
                                quantize_int8, save_int8)
from .calibration import calibration_inputs, check_calib_images
from .cli import build_detector, check_data, innermost, require_file


def default_program_path(checkpoint: str) -> str:
    """Where the program goes by default: beside the checkpoint,
    ``epoch_24.pth`` -> ``epoch_24.int8.pt2``."""
    return osp.splitext(checkpoint)[0] + '.int8.pt2'


def write_int8_program(cfg: Config, config: str, checkpoint: str, *,
                       calib_images: int,
                       out: str) -> Tuple[Dict[str, Any], float]:
    """Calibrate the detector of ``cfg`` with ``checkpoint``'s weights on
    its first ``calib_images`` train images and write its int8 program.

    Args:
        cfg: The config (``--cfg-options`` applied).
        config: Its path, for the record.
        checkpoint: The trained weights.
        calib_images: Calibration images.
        out: The program file (written whole or not at all).

    Returns:
        The program's record and the seconds it took.

    Raises:
        UserError: Bad input: the checkpoint, the calibration count, a
            backbone the export cannot capture.
    """
    check_calib_images(calib_images)
    start = time.perf_counter()
    detector = build_detector(cfg, checkpoint)
    deploy(detector, channels_last=False)
    dataset = innermost(cfg.train_dataloader.dataset)
    record = int8_record(
        config=config,
        checkpoint=checkpoint,
        model_cfg=cfg.model,
        calib_images=calib_images,
        calib_data=osp.join(
            dataset.get('data_root', ''), dataset.get('ann_file', '')))
    program = quantize_int8(
        dense_part(detector),
        calibration_inputs(cfg, detector.data_preprocessor, calib_images))
    save_int8(program, out, record)
    return record, time.perf_counter() - start


def _check_has_checkpoint(program: str, checkpoint: Optional[str]) -> None:
    if checkpoint is None:
        raise UserError(f'{program} was made from a checkpoint: pass that '
                        'checkpoint, or no int8 program')


def int8_program_for(cfg: Config, detector: nn.Module, *,
                     checkpoint: Optional[str], program: Optional[str],
                     calib_images: int, log: Callable[[str], None]):
    """The int8 program of ``detector``'s dense part: the saved one, checked
    against ``checkpoint`` and the config's model, or a new one calibrated
    on ``calib_images`` train images (what ``test.py`` and ``benchmark.py``
    do with ``--precision int8``).

    Args:
        cfg: The run's config.
        detector: The deployed (eval-mode) detector.
        checkpoint: Its weights' file (None: random weights, which only a
            new calibration fits).
        program: A file written by ``tools/deployment/quantize.py``, or
            None to calibrate.
        calib_images: Calibration images when there is no program.
        log: Where the one line saying which it was goes.

    Raises:
        UserError: A program made from other weights or another model, or
            one given without a checkpoint.
    """
    if program:
        _check_has_checkpoint(program, checkpoint)
        record = check_int8_program(program, cfg.model, checkpoint)
        log(f'int8: the program {program} (calibrated on '
            f'{record["calib_images"]} images of {record["calib_data"]})')
        return load_int8(program)
    log(f'int8: calibrating on {calib_images} train images first '
        '(tools/deployment/quantize.py saves a program to reuse)')
    return quantize_int8(
        dense_part(detector),
        calibration_inputs(cfg, detector.data_preprocessor, calib_images))


def add_precision_arguments(parser: argparse.ArgumentParser, *, several: bool,
                            what: str) -> None:
    """``--precision`` (one, or ``several`` to compare), ``--int8-program``,
    ``--calib-images`` and ``--force-precision``; ``what``: what the tool
    does with the form (for the help)."""
    parser.add_argument(
        '--precision',
        nargs='+' if several else None,
        choices=PRECISIONS,
        default=None if several else 'fp32',
        help=f'{what} the deploy form with its backbone and neck in this '
        f'precision{" (several: each, side by side)" if several else ""} '
        'on an x86 CPU (projects/res2net/models/precision.py; implies '
        '--deploy)')
    parser.add_argument(
        '--int8-program',
        help='for int8: the program that tools/deployment/quantize.py '
        'wrote for this checkpoint (without one, calibrate first)')
    parser.add_argument(
        '--calib-images',
        type=int,
        default=32,
        help='for int8 without a program: calibrate on this many train '
        'images (default 32)')
    parser.add_argument(
        '--force-precision',
        action='store_true',
        help='run bf16 on a CPU without bf16 instructions (emulated, slow)')


def planned_precisions(asked: Sequence[str], *, device: str,
                       force: bool) -> List[str]:
    """The precisions to run for those ``asked``, in order, each once (bf16
    without bf16 instructions becomes fp32 unless ``force``:
    ``precision_plan``), after printing the line each needs on this CPU.

    Raises:
        UserError: bf16 or int8 on CUDA.
    """
    planned = []
    for precision in asked:
        precision, note = precision_plan(precision, device=device, force=force)
        if note:
            print(f'note: {note}', flush=True)
        if precision not in planned:
            planned.append(precision)
    return planned


def plan_precisions(args: argparse.Namespace, cfg: Config, *, device: str,
                    checkpoint: Optional[str]) -> List[str]:
    """Check the precision flags of :func:`add_precision_arguments` before
    anything is built, print the line each precision needs on this CPU,
    and return the precisions to run (in order, each once; bf16 without
    bf16 instructions becomes fp32 unless forced).

    Raises:
        UserError: Flags that do not go together, a calibration count
            below 1, a missing train set to calibrate on, bf16 or int8 on
            CUDA, or an int8 program that is not this checkpoint's.
    """
    asked = args.precision or []
    asked = [asked] if isinstance(asked, str) else list(asked)
    if args.int8_program and 'int8' not in asked:
        raise UserError('--int8-program is for --precision int8')
    check_calib_images(args.calib_images)
    if 'int8' in asked and not args.int8_program:
        check_data(cfg, ['train_dataloader'])  # the calibration images
    planned = planned_precisions(
        asked, device=device, force=args.force_precision)
    if args.int8_program:
        # A program made from other weights or another model: refused
        # before anything is built or written.
        _check_has_checkpoint(args.int8_program, checkpoint)
        require_file(
            checkpoint, 'checkpoint',
            'pass the .pth that tools/train.py wrote for this '
            'config')
        check_int8_program(args.int8_program, cfg.model, checkpoint)
    return planned

# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The int8 program of a trained detector, written once for later test and
inference runs (``tools/deployment/quantize.py``)."""
import os.path as osp
import time
from typing import Any, Dict, Tuple

from mmengine.config import Config

from ..models.deploy import deploy
from ..models.precision import (dense_part, int8_record, quantize_int8,
                                save_int8)
from .calibration import calibration_inputs, check_calib_images
from .cli import build_detector, innermost


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

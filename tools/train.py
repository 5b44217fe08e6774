# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Train a detector: mmdet's ``tools/train.py``, with one-line input errors.

Example:
    python tools/train.py configs/htc_r2_101_fpn_20e.py
    python tools/train.py configs/demo/faster_rcnn_r2_50_fpn_demo.py \\
        --work-dir work_dirs/demo
"""
import argparse
import os.path as osp

from mmengine.device import get_device
from mmengine.dist import is_main_process

from projects.res2net.cli import (build_runner, check_data, config_from_args,
                                  make_parser, parse_cli, require_file,
                                  run_tool)
from projects.res2net.errors import UserError


def parse_args() -> argparse.Namespace:
    parser = make_parser(
        'Train a detector',
        'python tools/train.py configs/htc_r2_101_fpn_20e.py '
        '--work-dir work_dirs/htc', 'the dir to save logs and models in')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic-mixed-precision training (GPU)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate linearly with the total batch size')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint; without a path, from the latest '
        'checkpoint in the work dir')
    return parse_cli(parser)


def main() -> None:
    args = parse_args()
    cfg = config_from_args(args)

    if args.amp:
        if get_device() == 'cpu':
            raise UserError('--amp needs a GPU (mmengine\'s AmpOptimWrapper '
                            'has no CPU mode); drop --amp on this machine')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise UserError(
                f'--auto-scale-lr needs auto_scale_lr.base_batch_size in '
                f'{args.config}; add auto_scale_lr = dict(enable=False, '
                'base_batch_size=16) for the batch the lr was tuned for')
        cfg.auto_scale_lr.enable = True

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        require_file(
            args.resume, 'checkpoint to resume from',
            'pass an existing .pth, or --resume alone for the latest one in '
            f'{cfg.work_dir}')
        cfg.resume = True
        cfg.load_from = args.resume

    check_data(cfg, ['train_dataloader', 'val_dataloader'])

    build_runner(cfg).train()
    if is_main_process():
        print(f'checkpoints and logs: {osp.abspath(cfg.work_dir)}')


if __name__ == '__main__':
    run_tool(main)

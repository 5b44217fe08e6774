# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Train a detector: mmdet's ``tools/train.py``, with one-line input errors.

Example:
    python tools/train.py configs/htc_r2_101_fpn_20e.py
    python tools/train.py configs/demo/faster_rcnn_r2_50_fpn_demo.py \\
        --work-dir work_dirs/demo
"""
import argparse
import os.path as osp

from mmengine.config import Config
from mmengine.device import get_device
from mmengine.dist import is_main_process

from projects.res2net.datasets.dataset_check import (check_config,
                                                     check_num_classes,
                                                     skipped_lines)
from projects.res2net.datasets.sample_streams import use_sample_streams
from projects.res2net.engine.cli import (build_runner, check_data,
                                         config_from_args, make_parser,
                                         parse_cli, require_file, run_tool)
from projects.res2net.engine.faults import run_faults
from projects.res2net.engine.fileio import ATOMIC_BACKEND_ARGS
from projects.res2net.engine.loops import use_resumable_loop
from projects.res2net.engine.preemption import restart_count, stop_signals
from projects.res2net.engine.preflight import (build_model, check_load_from,
                                               check_types, config_errors,
                                               latest_checkpoint, read_resume,
                                               removed_on_early_failure)
from projects.res2net.engine.worklock import hold_work_dir
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
    parser.add_argument(
        '--partial-load',
        action='store_true',
        help='load only the weights of load_from that fit the model (by name '
        'and shape) and say how many did not; without it a checkpoint that '
        'does not fit stops the run')
    return parse_cli(parser)


def main() -> None:
    args = parse_args()
    # A stop signal from now on ends the run at a checkpoint
    # (SignalCheckpointHook); taken before any data loader worker is forked.
    stop_signals().install()
    cfg = config_from_args(args)
    # One run per work dir, from before the resume checkpoint is chosen to
    # the end: a second run stops here, having written nothing.
    with hold_work_dir(cfg):
        train(args, cfg)


def train(args: argparse.Namespace, cfg: Config) -> None:
    """The run of ``cfg``, its work dir locked."""
    # Checkpoints on a stop signal may stand mid-epoch: resume from them.
    use_resumable_loop(cfg)
    if restart_count() and latest_checkpoint(cfg.work_dir):
        # Slurm runs a requeued job's command again: go on where it stopped
        # (the run's own checkpoint, which loads whole).
        args.resume, args.partial_load = 'auto', False

    # --amp and --auto-scale-lr: the blocks of mmdet 3.3's tools/train.py
    # (OpenMMLab, Apache-2.0), which mmdet has inline only; here a CPU run
    # and a config without base_batch_size stop in one line instead.
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

    if args.partial_load and (args.resume or not cfg.get('load_from')):
        raise UserError('--partial-load goes with load_from (in the config or '
                        '--cfg-options load_from=PATH), not with --resume, '
                        'which loads its own checkpoint whole')
    # Everything that can be checked before the Runner writes anything.
    loaders = ['train_dataloader', 'val_dataloader']
    check_data(cfg, loaders)
    check_num_classes(cfg, loaders)
    datasets = check_config(cfg, loaders)  # the quick part: no decoding
    check_types(cfg)
    model = build_model(cfg)
    if args.resume == 'auto':
        resume_from = latest_checkpoint(cfg.work_dir)
        cfg.resume = resume_from is not None  # none yet: start afresh
        # Named explicitly: mmengine would read last_checkpoint itself.
        cfg.load_from = resume_from
    else:
        resume_from = args.resume
        if resume_from is not None:
            require_file(
                resume_from, 'checkpoint to resume from',
                'pass an existing .pth, or --resume alone for the latest one '
                f'in {cfg.work_dir}')
            cfg.resume = True
            cfg.load_from = resume_from
    if resume_from is not None:
        seed = read_resume(model, resume_from)
        # The samplers are built before mmengine reads the checkpoint: give
        # them the seed the run started with, so the data order goes on.
        if cfg.get('randomness', {}).get('seed') is None and seed is not None:
            cfg.randomness = dict(cfg.get('randomness', {}), seed=seed)
    elif cfg.get('load_from'):
        loading = check_load_from(
            model, cfg.load_from, partial=args.partial_load)
    del model

    # Each sample augmented from its own random stream, whichever worker
    # loads it: what makes a resume exact with any loader settings.
    use_sample_streams(cfg)
    checkpoint_hook = cfg.get('default_hooks', {}).get('checkpoint')
    if checkpoint_hook is not None and not checkpoint_hook.get(
            'backend_args') and not checkpoint_hook.get('out_dir'):
        # Each checkpoint whole or absent (projects/res2net/engine/fileio.py).
        checkpoint_hook.backend_args = dict(ATOMIC_BACKEND_ARGS)

    with removed_on_early_failure(cfg.work_dir), config_errors(cfg), \
            run_faults(args.config, cfg.work_dir):
        runner = build_runner(cfg)
        for line in skipped_lines(datasets):
            runner.logger.warning(line)
        if resume_from is None and cfg.get('load_from'):
            runner.logger.info(loading)
        runner.train()
    if is_main_process():
        print(f'checkpoints and logs: {osp.abspath(cfg.work_dir)}')


if __name__ == '__main__':
    run_tool(main)

# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Test a detector: COCO box (and mask) AP, printed and saved as JSON.

mmdet's ``tools/test.py`` flags; the metrics go to ``WORK_DIR/metrics.json``
as well as to the log.

Example:
    python tools/test.py configs/htc_r2_101_fpn_20e.py htc_r2_101.pth
"""
import argparse
import os.path as osp
from copy import deepcopy

from mmdet.engine.hooks.utils import trigger_visualization_hook
from mmdet.evaluation import DumpDetResults
from mmengine.config import ConfigDict
from mmengine.device import get_device
from mmengine.dist import is_main_process

from projects.res2net.datasets.dataset_check import check_config, skipped_lines
from projects.res2net.engine.cli import (ap_table, build_runner, check_data,
                                         config_from_args, innermost,
                                         make_parser, parse_cli, run_tool)
from projects.res2net.engine.faults import run_faults
from projects.res2net.engine.fileio import write_json
from projects.res2net.engine.preflight import (build_model, check_types,
                                               check_weights, config_errors,
                                               removed_on_early_failure)
from projects.res2net.engine.quantize import (add_precision_arguments,
                                              plan_precisions)
from projects.res2net.errors import UserError
from projects.res2net.models.checkpoint import no_random_init
from projects.res2net.paths import METRICS_JSON


def parse_args() -> argparse.Namespace:
    parser = make_parser(
        'Test (and evaluate) a detector',
        'python tools/test.py configs/htc_r2_101_fpn_20e.py '
        'work_dirs/htc/epoch_20.pth --show-dir vis',
        'the dir to save the evaluation metrics in')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out', help='dump predictions to a .pkl file for offline analysis')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='draw predictions into this dir (under the run\'s log dir)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--tta', action='store_true', help='test with flip augmentation')
    parser.add_argument(
        '--deploy',
        action='store_true',
        help='test the deploy form: BN folded into the convs, channels-last '
        '(projects/res2net/models/deploy.py)')
    add_precision_arguments(parser, several=False, what='test')
    return parse_cli(parser)


def enable_tta(cfg: ConfigDict) -> None:
    """Wrap the model for flip test-time augmentation, as mmdet does.

    Follows the ``--tta`` block of mmdet 3.3's ``tools/test.py``
    (OpenMMLab, Apache-2.0), without its warnings: the config's
    ``tta_model`` and ``tta_pipeline``, else a horizontal flip merged by
    NMS. mmdet has it inline in its tool, not as a function to import
    (mmengine's ``build_runner_with_tta`` is for FSDP and builds the Runner
    itself).
    """
    if 'tta_model' not in cfg:
        cfg.tta_model = dict(
            type='DetTTAModel',
            tta_cfg=dict(
                nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        cfg.tta_pipeline = deepcopy(
            innermost(cfg.test_dataloader.dataset).pipeline)
        flips = [
            dict(type='RandomFlip', prob=1.),
            dict(type='RandomFlip', prob=0.)
        ]
        pack = dict(
            type='PackDetInputs',
            meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                       'scale_factor', 'flip', 'flip_direction'))
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug', transforms=[flips, [pack]])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def main() -> None:
    args = parse_args()
    cfg = config_from_args(args)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise UserError(f'--out {args.out}: predictions are dumped as a '
                        'pickle; use a .pkl file name')
    if args.tta and args.precision != 'fp32':
        raise UserError(f'--tta with --precision {args.precision}: test the '
                        'low-precision form without test-time augmentation')
    precision, = plan_precisions(
        args, cfg, device=get_device(), checkpoint=args.checkpoint)
    check_data(cfg, ['test_dataloader'])
    datasets = check_config(cfg, ['test_dataloader'])
    # mmengine would load a checkpoint that does not fit non-strictly and
    # test the layers it left random: check it first, before anything is
    # written.
    check_types(cfg)
    check_weights(
        build_model(cfg),
        args.checkpoint,
        what='checkpoint',
        fix='pass the .pth that tools/train.py wrote for this config (see '
        'last_checkpoint in its work dir)')
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    if args.tta:
        enable_tta(cfg)
    if args.deploy or args.precision != 'fp32':
        hook = dict(type='DeployHook', precision=precision)
        if precision == 'int8':
            hook.update(
                int8_program=args.int8_program, calib_images=args.calib_images)
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [hook]

    with removed_on_early_failure(cfg.work_dir), config_errors(cfg), \
            run_faults(args.config):
        # Every parameter comes from the checkpoint (checked above).
        with no_random_init():
            runner = build_runner(cfg)
        for line in skipped_lines(datasets):
            runner.logger.warning(line)
        if args.out is not None:
            runner.test_evaluator.metrics.append(
                DumpDetResults(out_file_path=args.out))
        metrics = runner.test()

    if is_main_process():
        path = osp.join(cfg.work_dir, METRICS_JSON)
        write_json(
            path,
            dict(
                config=args.config,
                checkpoint=args.checkpoint,
                metrics=metrics))
        evaluator = cfg.test_evaluator
        if any(key.startswith('coco/') for key in metrics):
            print(ap_table(metrics))
        elif isinstance(evaluator, dict) and evaluator.get('format_only'):
            print('no COCO AP: format_only; the detections were written to '
                  f'{evaluator.get("outfile_prefix")}.bbox.json (and '
                  '.segm.json for masks)')
        else:
            print('no COCO AP: the model made no detections above the score '
                  'threshold on this data (see the log above)')
        print(f'metrics written to {path}')


if __name__ == '__main__':
    run_tool(main)

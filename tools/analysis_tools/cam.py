# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Class activation maps of a detector's backbone stages, as a PNG grid.

The Res2Net paper's Grad-CAM figure for a detector trained here: the first
panel shows the image with the detections that are explained, then one
panel per backbone stage with its class activation map over the image.

``--method gradcam`` (Selvaraju et al., 2017) weighs each channel by its
gradient averaged over the map, ``--method hirescam`` (Draelos & Carin,
2020) by the gradient at each position; the target is the sum of the
scores of the top-k detections. The maps, and why HiResCAM stays on the
objects where Grad-CAM may not, are :mod:`projects.res2net.analysis.cam`'s.

Example:
    python tools/analysis_tools/cam.py \\
        configs/demo/faster_rcnn_r2_50_fpn_demo.py \\
        work_dirs/demo/iter_500.pth data/demo/val2017/000000000006.png \\
        --out cam.png --cfg-options data_root=data/demo/
"""
import argparse

import torch

from projects.res2net.analysis.cam import (METHODS, activation_maps, cam_input,
                                           class_name, draw, grid_title,
                                           load_detector, read_image,
                                           save_maps, select_layers)
from projects.res2net.engine.cli import (add_cfg_options, load_config,
                                         require_file, run_tool, tool_parser)
from projects.res2net.engine.fileio import write_atomically
from projects.res2net.errors import UserError


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        'Draw class activation maps (Grad-CAM) of the backbone '
        'stages of a two-stage detector over an image',
        'python tools/analysis_tools/cam.py '
        'configs/demo/faster_rcnn_r2_50_fpn_demo.py '
        'work_dirs/demo/iter_500.pth data/demo/val2017/000000000006.png '
        '--out cam.png')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('image', help='image file')
    parser.add_argument('--out', required=True, help='the PNG to write')
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        '--stages',
        nargs='+',
        type=int,
        metavar='I',
        help='backbone stages to explain, 0-based, among the backbone\'s '
        'out_indices (default: all of them)')
    which.add_argument(
        '--target-layers',
        nargs='+',
        metavar='NAME',
        help='modules to explain instead, by name in the model, e.g. '
        'backbone.layer4 neck.fpn_convs.0')
    parser.add_argument(
        '--method',
        nargs='+',
        choices=METHODS,
        default=['gradcam'],
        help='gradcam: channel weights = the gradient averaged over the map '
        '(Selvaraju et al.); hirescam: gradient x activation at each '
        'position, summed over channels (Draelos & Carin), which stays on '
        'the RoIs that the gradient comes from; several: a row each')
    parser.add_argument(
        '--topk',
        type=int,
        default=3,
        help='explain the sum of the scores of this many top detections')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='explain only detections scoring at least this (the best one '
        'if none does)')
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu',
        help='device to run on, e.g. cpu or cuda:0 (default: cuda if '
        'available)')
    parser.add_argument(
        '--alpha', type=float, default=0.5, help='opacity of the heat map')
    parser.add_argument(
        '--dpi',
        type=int,
        default=100,
        help='PNG pixels per inch; a panel is 3 inches wide')
    parser.add_argument(
        '--save-maps',
        metavar='FILE.npz',
        help='also save the maps (at image size, in [0, 1]) and the '
        'explained detections as a numpy .npz')
    add_cfg_options(parser)
    return parser.parse_args()


def check_args(args: argparse.Namespace) -> None:
    """Check the arguments and input files before any model is built.

    Raises:
        UserError: A missing file or an argument out of range.
    """
    require_file(
        args.image, 'image', 'pass an image file, e.g. '
        'data/demo/val2017/000000000001.png')
    if '://' not in args.checkpoint:
        require_file(
            args.checkpoint, 'checkpoint',
            'pass the .pth that tools/train.py wrote (see last_checkpoint '
            'in its work dir)')
    if args.topk < 1:
        raise UserError(f'--topk {args.topk}: explain at least 1 detection')
    if not 0 <= args.score_thr <= 1:
        raise UserError(f'--score-thr {args.score_thr}: a score is in [0, 1]')
    if not 10 <= args.dpi <= 1000:
        raise UserError(f'--dpi {args.dpi}: pick 10 to 1000 (default 100)')
    if not 0 <= args.alpha <= 1:
        raise UserError(f'--alpha {args.alpha}: an opacity is in [0, 1]')
    if args.save_maps and not args.save_maps.endswith('.npz'):
        raise UserError(f'--save-maps {args.save_maps}: the maps are saved '
                        'as numpy .npz; use a .npz file name')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise UserError(f'--device {args.device}: no CUDA device here; '
                        'pass --device cpu')


def main() -> None:
    args = parse_args()
    check_args(args)
    image = read_image(args.image)
    cfg = load_config(args.config, args.cfg_options)
    model = load_detector(cfg, args.checkpoint, args.device)
    layers = select_layers(
        model, stages=args.stages, target_layers=args.target_layers)
    inputs, samples = cam_input(model, cfg, args.image)
    detections, cams, how = activation_maps(
        model,
        inputs,
        samples,
        layers,
        topk=args.topk,
        score_thr=args.score_thr,
        methods=list(dict.fromkeys(args.method)))  # once each, in order
    classes = model.dataset_meta['classes']
    for box, score, label in zip(*detections):
        print(f'explained: {class_name(classes, label)} {score:.3f} at '
              f'[{", ".join(f"{v:.0f}" for v in box)}]')
    fig = draw(
        image,
        detections,
        cams,
        classes=classes,
        alpha=args.alpha,
        title=grid_title(args.image, detections, cams, how))
    write_atomically(args.out,
                     lambda tmp: fig.savefig(tmp, format='png', dpi=args.dpi))
    if args.save_maps:
        save_maps(args.save_maps, detections, cams)
    print(f'CAM grid written to {args.out}')


if __name__ == '__main__':
    run_tool(main)

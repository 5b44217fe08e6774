# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Detect objects in an image, a folder of images or an image URL.

mmdet's ``demo/image_demo.py`` (not in mmdet's pip package) as a thin entry
point over mmdet's ``DetInferencer``: the drawn images go to
``OUT_DIR/vis/``, the predictions to ``OUT_DIR/preds/`` as JSON. Its
text-prompt flags (``--texts``, ``--custom-entities``, ``--chunked-size``,
``--tokens-positive``) are left out: they serve grounding models (GLIP,
Grounding DINO) only. ``model`` is a config file; ``--weights`` a checkpoint
file or an http(s) URL (downloaded once into torch's hub cache), checked
against the config's model before anything is written.

Example (the demo detector that ``make demo`` trains)::

    python demo/image_demo.py data/demo/val2017/000000000095.png
        configs/demo/faster_rcnn_r2_50_fpn_demo.py
        --weights work_dirs/demo/iter_400.pth --device cpu
"""
import argparse
import os
import os.path as osp

from mmdet.apis import DetInferencer
from mmdet.apis.det_inferencer import IMG_EXTENSIONS

from projects.res2net.engine.cli import (choose_device, load_config, run_tool,
                                         tool_parser)
from projects.res2net.engine.preflight import (build_model, check_weights,
                                               trust_checkpoints)
from projects.res2net.errors import UserError


def parse_args() -> argparse.Namespace:
    # The flags and defaults of mmdet 3.3's demo/image_demo.py (OpenMMLab,
    # Apache-2.0), but --device: the GPU where torch sees one, else the CPU;
    # and --trust-checkpoint, as the tools have it.
    parser = tool_parser(
        'Detect objects in images with mmdet\'s DetInferencer; draws them '
        'into OUT_DIR/vis/ and writes them to OUT_DIR/preds/',
        'python demo/image_demo.py data/demo/val2017/000000000095.png '
        'configs/demo/faster_rcnn_r2_50_fpn_demo.py \\\n'
        '    --weights work_dirs/demo/iter_400.pth --device cpu')
    parser.add_argument(
        'inputs', help='an image file, a folder of images or an image URL')
    parser.add_argument('model', help='config file')
    parser.add_argument(
        '--weights', help='checkpoint file or http(s) URL of this config')
    parser.add_argument(
        '--out-dir',
        default='outputs',
        help='output directory of images and prediction results')
    parser.add_argument(
        '--device',
        help='device used for inference (default: cuda if available, else '
        'cpu)')
    parser.add_argument(
        '--pred-score-thr',
        type=float,
        default=0.3,
        help='bbox score threshold')
    parser.add_argument(
        '--batch-size', type=int, default=1, help='inference batch size')
    parser.add_argument(
        '--show',
        action='store_true',
        help='display the image in a popup window')
    parser.add_argument(
        '--no-save-vis',
        action='store_true',
        help='do not save detection vis results')
    parser.add_argument(
        '--no-save-pred',
        action='store_true',
        help='do not save detection json results')
    parser.add_argument(
        '--print-result',
        action='store_true',
        help='whether to print the results')
    parser.add_argument(
        '--palette',
        default='none',
        choices=['coco', 'voc', 'citys', 'random', 'none'],
        help='color palette used for visualization')
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='load the checkpoint with torch\'s full unpickler: only for a '
        'legacy file you trust, since its pickle can run code')
    return parser.parse_args()


def check_inputs(inputs: str) -> None:
    """Raise one line unless ``inputs`` is a URL, an image file or a folder
    with images."""
    if '://' in inputs or osp.isfile(inputs):
        return
    if not osp.isdir(inputs):
        raise UserError(f'input not found: {inputs}; pass an image file, a '
                        'folder of images or an image URL')
    if not any(name.lower().endswith(IMG_EXTENSIONS)
               for name in os.listdir(inputs)):
        raise UserError(f'no images ({", ".join(IMG_EXTENSIONS)}) in '
                        f'{inputs}; pass a folder of images')


def main() -> None:
    args = parse_args()
    check_inputs(args.inputs)
    cfg = load_config(args.model)
    device = choose_device(args.device)
    if args.trust_checkpoint:
        trust_checkpoints()
    if args.weights is not None:
        # DetInferencer loads non-strictly: a checkpoint of another model
        # would leave layers random and still draw boxes.
        check_weights(
            build_model(cfg),
            args.weights,
            what='checkpoint',
            fix='pass a checkpoint trained with this config')
    init_args = dict(
        model=cfg, weights=args.weights, device=device, palette=args.palette)
    call_args = {
        key: value
        for key, value in vars(args).items()
        if key not in ('model', 'weights', 'device', 'palette',
                       'trust_checkpoint')
    }
    if args.no_save_vis and args.no_save_pred:
        call_args['out_dir'] = ''
    DetInferencer(**init_args)(**call_args)
    if call_args['out_dir']:
        print(f'results have been saved at {call_args["out_dir"]}')


if __name__ == '__main__':
    run_tool(main)

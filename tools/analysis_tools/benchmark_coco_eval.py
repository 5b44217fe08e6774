# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""COCO evaluation speed: pycocotools, mmdet's COCOevalMP and faster-coco-eval
(FasterCocoMetric) on one generated COCO-like set, with the same AP.

The entry point: what is generated and measured, and how, is in
``projects/res2net/analysis/benchmark_coco_eval.py``.

Example:
    python tools/analysis_tools/benchmark_coco_eval.py --images 5000 \\
        --repeats 2 --out coco_eval_speed.json
"""
import argparse
import sys
import tempfile

from projects.res2net.analysis import benchmark_coco_eval as bench
from projects.res2net.analysis.speed import describe_device
from projects.res2net.engine.cli import run_tool, tool_parser
from projects.res2net.engine.fileio import write_json
from projects.res2net.errors import UserError
from projects.res2net.evaluation.faster_coco_metric import EVALUATORS


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        "Time COCO evaluation (pycocotools' COCOeval as CocoMetric runs it, "
        "mmdet's COCOevalMP as CocoMetric(use_mp_eval=True) runs it, and "
        'faster-coco-eval as FasterCocoMetric runs it) on a generated '
        'COCO-like set, interleaved in one process, and check that their 12 '
        f'stats agree within {bench.TOLERANCE:g}',
        'python tools/analysis_tools/benchmark_coco_eval.py --images 5000 '
        '--repeats 2 --out coco_eval_speed.json')
    parser.add_argument(
        '--images',
        type=int,
        default=5000,
        help='images in the set (default: 5000, as COCO val2017)')
    parser.add_argument(
        '--classes',
        type=int,
        default=80,
        help="COCO's categories used, 1 to 80 (default: 80)")
    parser.add_argument(
        '--objects-per-image',
        type=float,
        default=7.36,
        help='mean ground-truth objects per image (default: 7.36, as COCO '
        'val2017)')
    parser.add_argument(
        '--detections-per-image',
        type=int,
        default=100,
        help='results per image, each with a mask (default: 100, mmdet\'s '
        'max_per_img)')
    parser.add_argument(
        '--seed', type=int, default=0, help='the set\'s seed (default: 0)')
    parser.add_argument(
        '--iou-types',
        nargs='+',
        choices=bench.IOU_TYPES,
        default=bench.IOU_TYPES,
        help='what to evaluate (default: bbox segm)')
    parser.add_argument(
        '--evaluators',
        nargs='+',
        choices=EVALUATORS,
        default=EVALUATORS,
        help='what evaluates (default: all; the first of pycocotools or '
        'the first given is the reference)')
    parser.add_argument(
        '--repeats',
        type=int,
        default=2,
        help='rounds of every evaluator on each IoU type (default: 2)')
    parser.add_argument(
        '--data-dir',
        help='keep the generated set there (gt.json, results.bbox.json, '
        'results.segm.json); by default it lives in a temporary folder')
    parser.add_argument('--out', help='also write the results to this JSON')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.repeats < 1:
        raise UserError('--repeats must be at least 1')
    bench.check_evaluators(args.evaluators)
    data = bench.generate_coco_like(
        images=args.images,
        classes=args.classes,
        objects_per_image=args.objects_per_image,
        detections_per_image=args.detections_per_image,
        seed=args.seed)
    sizes = bench.describe_set(data)
    with tempfile.TemporaryDirectory() as tmp:
        paths = bench.write_set(data, args.data_dir or tmp)
        del data  # the evaluators load the files, as CocoMetric does
        timings = bench.benchmark_coco_eval(
            paths,
            iou_types=args.iou_types,
            evaluators=args.evaluators,
            repeats=args.repeats,
            on_run=lambda round_, iou_type, evaluator, seconds: print(
                f'round {round_ + 1}/{args.repeats}: {iou_type} by '
                f'{evaluator} in {seconds:.1f} s',
                file=sys.stderr,
                flush=True))
    found = bench.summarize(timings)
    device = describe_device('cpu')
    print(f'{sizes["images"]} images, {sizes["classes"]} classes, '
          f'{sizes["objects"]} objects ({sizes["crowd"]} crowd; small '
          f'{sizes["small"]}, medium {sizes["medium"]}, large '
          f'{sizes["large"]}), {sizes["results"]} results with masks; seed '
          f'{args.seed}; {device}; {args.repeats} interleaved rounds')
    print(bench.table(found, timings.loading))
    wrong = bench.disagreements(found)
    if wrong:
        print(
            f'error: the 12 stats differ by more than {bench.TOLERANCE:g}: ' +
            '; '.join(wrong),
            file=sys.stderr)
        sys.exit(1)
    print(f'the 12 stats of every evaluator agree within {bench.TOLERANCE:g}')
    if args.out:
        write_json(
            args.out,
            dict(
                device=device,
                data=dict(sizes, seed=args.seed),
                repeats=args.repeats,
                tolerance=bench.TOLERANCE,
                results=found,
                loading_seconds=timings.loading))
        print(f'written to {args.out}')


if __name__ == '__main__':
    run_tool(main)

# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Print the model-zoo table of runs and write them into a metafile.yml.

Each WORK_DIR is read as ``tools/train.py``, ``tools/test.py`` and
``tools/analysis_tools/benchmark.py`` left it: the training log (peak GPU
memory), ``metrics.json`` (box/mask AP, the tested checkpoint) and
``benchmark.json`` (fps). A number that is not there shows as "–", and
stderr says why; nothing is estimated.

Example:
    python tools/analysis_tools/benchmark_table.py work_dirs/faster \\
        work_dirs/htc --compare --metafile metafile.yml
    python tools/analysis_tools/benchmark_table.py --reference \\
        --speed-from docs/zoo_speed --metafile metafile.yml
    python tools/analysis_tools/benchmark_table.py --speed-table docs/zoo_speed

``--reference`` prints the MMDetection model zoo's own table of the Res2Net
detectors. Its "Inf time (fps)" column is a GPU's, and the zoo publishes
none for these models: ``--speed-from DIR`` reads ``DIR/<config
name>/benchmark.json`` as ``benchmark.py CONFIG --work-dir DIR/<config
name>`` wrote it; a GPU's fills the column, labelled with the GPU, a CPU's
stays out of it. Both go into the metafile's ``inference time (ms/im)``
with their device. ``--speed-table DIR`` prints every config's speed of
``DIR`` as measured: fps, ms/image, peak memory, input and device.
"""
import argparse
import sys

from projects.res2net.engine.cli import run_tool, tool_parser
from projects.res2net.errors import UserError
from projects.res2net.zoo.table import (format_speed_table, format_table,
                                        missing_lines, read_run,
                                        reference_rows, update_metafile)


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        'Print the model-zoo table (Backbone, Style, Lr schd, '
        'Mem, Inf time, box AP, mask AP, Config, Download) of work dirs and '
        'write their models into a model-index metafile.yml',
        'python tools/analysis_tools/benchmark_table.py '
        'work_dirs/faster work_dirs/htc --compare --metafile metafile.yml')
    parser.add_argument(
        'work_dirs',
        nargs='*',
        metavar='WORK_DIR',
        help='work dirs of tools/train.py + tools/test.py (+ benchmark.py)')
    parser.add_argument(
        '--reference',
        action='store_true',
        help='the MMDetection model zoo\'s published Res2Net results instead '
        'of work dirs')
    parser.add_argument(
        '--speed-from',
        metavar='DIR',
        help='with --reference: read each config\'s speed from DIR/<config '
        'name>/benchmark.json of tools/analysis_tools/benchmark.py, e.g. '
        'docs/zoo_speed (a GPU\'s fills the Inf time column; a CPU\'s goes '
        'into the metafile only)')
    parser.add_argument(
        '--speed-table',
        metavar='DIR',
        help='print the speed of every DIR/<config name>/benchmark.json '
        '(fps, ms/image, peak memory, input, device) instead, e.g. '
        'docs/zoo_speed')
    parser.add_argument(
        '--compare',
        action='store_true',
        help='follow each number with the reference value of the same config '
        'and the difference')
    parser.add_argument(
        '--metafile',
        help='write (update) the models into this model-index file, e.g. '
        'metafile.yml')
    args = parser.parse_args()
    if args.speed_table:
        if args.work_dirs or args.reference or args.speed_from or \
                args.compare or args.metafile:
            parser.error('--speed-table DIR goes alone')
        return args
    if bool(args.work_dirs) == args.reference:
        parser.error('give WORK_DIRs, --reference or --speed-table DIR')
    if args.speed_from and not args.reference:
        parser.error('--speed-from goes with --reference (a work dir\'s own '
                     'benchmark.json gives its fps)')
    return args


def main() -> None:
    args = parse_args()
    if args.speed_table:
        print(format_speed_table(args.speed_table))
        return
    if args.reference:
        rows = reference_rows(args.speed_from)
    else:
        rows = [read_run(work_dir) for work_dir in args.work_dirs]
        names = [row.name for row in rows]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if args.metafile and duplicated:
            raise UserError(
                f'several work dirs test {", ".join(duplicated)}: a metafile '
                'holds one model per config; pass one work dir per config')
    for line in missing_lines(rows):
        print(line, file=sys.stderr)
    print(format_table(rows, compare=args.compare))
    if args.metafile:
        update_metafile(args.metafile, rows)
        print(f'models written to {args.metafile}', file=sys.stderr)


if __name__ == '__main__':
    run_tool(main)

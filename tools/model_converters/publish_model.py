# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Publish a trained checkpoint: weights and meta only, named by its hash.

As mmdet's ``publish_model.py``: the optimizer, the parameter schedulers and
the message hub are dropped (``state_dict`` and ``meta`` stay), and the file
is written as ``OUT-<first 8 hex digits of its sha256>.pth``, so that its
name says which bytes it holds. Unlike it, the slim file is then loaded back
with torch's weights-only loader, strictly, into the model of the config
it was trained with (recorded in its meta, or ``--config``): a file that
would not load is removed again and the tool stops with one line. The
publication is recorded in ``published.json`` beside the checkpoint, and
``tools/analysis_tools/benchmark_table.py`` links the published file.

Example:
    python tools/model_converters/publish_model.py \\
        work_dirs/htc_r2_101_fpn_20e/epoch_20.pth htc_r2_101_fpn_20e.pth
"""
import argparse
import os.path as osp

from projects.res2net.engine.cli import load_config, run_tool, tool_parser
from projects.res2net.zoo.publish import publish


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        'Publish a checkpoint: keep state_dict and meta, name it by its '
        'sha256, and check that it loads strictly into its model',
        'python tools/model_converters/publish_model.py '
        'work_dirs/htc_r2_101_fpn_20e/epoch_20.pth htc_r2_101_fpn_20e.pth')
    parser.add_argument('in_file', help='a checkpoint that train.py wrote')
    parser.add_argument(
        'out_file', help='the name to publish under; -<sha8> is added')
    parser.add_argument(
        '--config',
        help='the config to check the weights against (default: the config '
        'recorded in the checkpoint\'s meta)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config) if args.config is not None else None
    published = publish(args.in_file, args.out_file, cfg)
    print(f'published {published.file} '
          f'({osp.getsize(published.file) / 2**20:.1f} MiB, sha256 '
          f'{published.sha256}); dropped: '
          f'{", ".join(published.dropped) or "nothing"}; loads strictly into '
          f'the config\'s {published.model}; recorded in '
          f'{osp.join(osp.dirname(args.in_file), "published.json")}')


if __name__ == '__main__':
    run_tool(main)

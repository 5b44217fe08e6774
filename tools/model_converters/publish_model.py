# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Publish a trained checkpoint: weights and meta only, named by its hash.

As mmdet's ``publish_model.py``: the optimizer, the parameter schedulers and
the message hub are dropped (``state_dict`` and ``meta`` stay), and the file
is written as ``OUT-<first 8 hex digits of its sha256>.pth``, so that its
name says which bytes it holds. Unlike it, the slim file is then loaded back
with torch's weights-only loader, strictly, into the model of the config
it was trained with (recorded in its meta, or ``--config``): a file that
would not load is removed again and the tool stops with one line.

Example:
    python tools/model_converters/publish_model.py \\
        work_dirs/htc_r2_101_fpn_20e/epoch_20.pth htc_r2_101_fpn_20e.pth
"""
import argparse
import hashlib
import io
import os
import os.path as osp

import torch
from mmengine.config import Config

from projects.res2net.cli import (build_detector, load_config, run_tool,
                                  tool_parser, write_atomically)
from projects.res2net.errors import CheckpointError, UserError
from projects.res2net.preflight import read_checkpoint


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


def published_name(out_file: str, digest: str) -> str:
    """``OUT-<sha8>.pth`` for the file whose sha256 is ``digest``."""
    stem = out_file[:-len('.pth')] if out_file.endswith('.pth') else out_file
    return f'{stem}-{digest[:8]}.pth'


def slim(checkpoint: dict) -> dict:
    """The checkpoint without optimizer, schedulers and message hub."""
    return {
        'state_dict': checkpoint['state_dict'],
        'meta': checkpoint.get('meta') or {}
    }


def main() -> None:
    args = parse_args()
    fix = 'pass a checkpoint that tools/train.py wrote'
    checkpoint = read_checkpoint(args.in_file, 'checkpoint', fix)
    if 'state_dict' not in checkpoint:
        raise CheckpointError(f'{args.in_file} has no state_dict; {fix}')
    published = slim(checkpoint)
    if args.config is not None:
        cfg = load_config(args.config)
    elif isinstance(published['meta'].get('cfg'), str):
        cfg = Config.fromstring(published['meta']['cfg'], file_format='.py')
    else:
        raise UserError(f'{args.in_file} records no config in its meta; pass '
                        'the one it was trained with: --config CONFIG')

    buffer = io.BytesIO()
    torch.save(published, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = published_name(args.out_file, digest)

    def write(tmp: str) -> None:
        with open(tmp, 'wb') as f:
            f.write(data)

    write_atomically(path, write)
    try:
        # mmengine's loader, weights-only, strict: as a user would load it.
        model = build_detector(cfg, path)
    except CheckpointError as err:
        os.remove(path)
        raise CheckpointError(
            f'not published, the file is removed: {err}') from err
    except BaseException:
        os.remove(path)
        raise
    dropped = sorted(set(checkpoint) - set(published))
    print(f'published {path} ({osp.getsize(path) / 2**20:.1f} MiB, sha256 '
          f'{digest}); dropped: '
          f'{", ".join(dropped) or "nothing"}; loads strictly into the '
          f'config\'s {type(model).__name__}')


if __name__ == '__main__':
    run_tool(main)

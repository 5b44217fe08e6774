# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Generate the synthetic COCO-format demo dataset.

Thin command-line wrapper over
:func:`projects.res2net.datasets.demo_data.generate_demo_dataset`.
"""
import argparse
import sys
from typing import List, NoReturn, Optional

DESCRIPTION = """\
Generate a small, deterministic COCO-format detection + instance/semantic
segmentation demo dataset in the COCO directory layout: sports ball, kite and
tv drawn as discs, triangles and rectangles, with all 80 COCO categories in
the annotation files so the stock COCO configs read it unchanged."""

EPILOG = """\
example:
  python tools/misc/generate_demo_data.py --out data/demo
  python tools/misc/generate_demo_data.py --out data/demo --num-train 600 \\
      --num-val 100 --image-size 128 --seed 0 --force

Re-running with the same arguments is a no-op ("up to date"). Set a COCO
config's data_root to OUT (with a trailing slash) to train on it.
"""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one ``error: ...`` line too."""

    def error(self, message: str) -> NoReturn:
        print(f'error: {message}', file=sys.stderr)
        sys.exit(2)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse command-line arguments.

    Args:
        argv (list[str], optional): Arguments; ``sys.argv[1:]`` if None.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    parser = _Parser(
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--out', required=True, help='output directory (the data_root)')
    parser.add_argument(
        '--num-train',
        type=int,
        default=600,
        help='number of training images (default: 600)')
    parser.add_argument(
        '--num-val',
        type=int,
        default=100,
        help='number of validation images (default: 100)')
    parser.add_argument(
        '--image-size',
        type=int,
        default=128,
        help='side of the square images in pixels, >= 32 (default: 128)')
    parser.add_argument(
        '--seed', type=int, default=0, help='random seed (default: 0)')
    parser.add_argument(
        '--force',
        action='store_true',
        help='replace OUT if it exists with other parameters or is not a '
        'demo dataset')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the generator and print a short summary.

    Args:
        argv (list[str], optional): Arguments; ``sys.argv[1:]`` if None.

    Returns:
        int: Process exit status.
    """
    args = parse_args(argv)
    # Imported only now: importing ``projects.res2net`` runs the package
    # ``__init__`` (which registers the backbone, importing torch and mmdet),
    # so ``--help`` and usage errors stay instant.
    from projects.res2net.datasets.demo_data import generate_demo_dataset
    try:
        summary = generate_demo_dataset(
            args.out,
            num_train=args.num_train,
            num_val=args.num_val,
            image_size=args.image_size,
            seed=args.seed,
            force=args.force)
    except (ValueError, FileExistsError) as e:
        # One line, no traceback: these are usage errors, not bugs.
        print(f'error: {e}', file=sys.stderr)
        return 2
    state = 'generated' if summary['generated'] else 'up to date'
    print(f'{summary["out_dir"]}: {state}')
    for split, stats in summary['splits'].items():
        per_cat = ', '.join(f'{name}={count}'
                            for name, count in stats['per_category'].items())
        print(f'  {split}: {stats["images"]} images, '
              f'{stats["instances"]} instances ({per_cat})')
    return 0


if __name__ == '__main__':
    sys.exit(main())

# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The package's imports run one way (docs/development.md, "Layout"):
tools → zoo / analysis → engine / datasets / evaluation → models → errors,
paths.

Model code never imports the run, the data, the analysis or the zoo code:
a config that only needs the backbone gets only the backbone's imports.
"""
import ast
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from projects.res2net import paths

PACKAGE = paths.REPO_ROOT / 'projects' / 'res2net'
# What each part may import from the package, itself included.
ALLOWED = {
    'errors': {'errors'},
    'paths': {'paths'},
    'models': {'errors', 'paths', 'models'},
    'engine': {'errors', 'paths', 'models', 'engine'},
    'datasets': {'errors', 'paths', 'models', 'engine', 'datasets'},
    # the metric: beside engine and datasets, needing neither
    'evaluation': {'errors', 'paths', 'models', 'evaluation'},
    'analysis': {
        'errors', 'paths', 'models', 'engine', 'datasets', 'evaluation',
        'analysis'
    },
    'zoo': {
        'errors', 'paths', 'models', 'engine', 'datasets', 'evaluation',
        'analysis', 'zoo'
    },
}


def _part(module: Tuple[str, ...]) -> str:
    """The part of the package a module path (below projects.res2net)
    belongs to: its folder, or the module itself at the top."""
    return module[0]


def _imports(path: Path) -> Iterator[Tuple[str, ...]]:
    """The package modules that ``path`` imports (anywhere in the file),
    as paths below ``projects.res2net``."""
    here = path.relative_to(PACKAGE).with_suffix('').parts
    package = here[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + tuple(
                    filter(None, (node.module or '').split('.')))
                if not target:  # ``from . import x``: x is a module
                    for alias in node.names:
                        yield (alias.name, )
                else:
                    yield target
            elif (node.module or '').startswith('projects.res2net.'):
                yield tuple(node.module.split('.')[2:])
            elif node.module == 'projects.res2net':
                yield from ((alias.name, ) for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith('projects.res2net.'):
                    yield tuple(alias.name.split('.')[2:])
                elif alias.name.startswith('tools'):
                    yield ('tools', )


MODULES = sorted(
    path for path in PACKAGE.rglob('*.py')
    if path.relative_to(PACKAGE).parts != ('__init__.py', ))


@pytest.mark.parametrize(
    'path', MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path: Path):
    part = _part(path.relative_to(PACKAGE).with_suffix('').parts)
    wrong = sorted('.'.join(target) for target in _imports(path)
                   if _part(target) not in ALLOWED[part])
    assert not wrong, f'{part} must not import {wrong}'


def test_every_part_is_known():
    parts = {
        _part(p.relative_to(PACKAGE).with_suffix('').parts)
        for p in MODULES
    }
    assert parts == set(ALLOWED)

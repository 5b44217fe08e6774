# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Processes that start with torch, mmengine and mmdet already imported.

A tool process spends about 5 s of CPU importing torch, mmengine and mmdet
before it does anything. A tool that starts many such processes one after
another (``zoo_demo.py``'s steps, ``check_mmdet_families.py``'s families)
forks them from multiprocessing's fork server instead: it imports
:data:`PRELOAD` once and runs nothing else, so each process still starts
from the same clean state, a fresh Python with those modules imported, as
``python tools/...`` would reach after its imports.
"""
import atexit
import multiprocessing
import os
import runpy
import sys
from multiprocessing.context import ForkServerContext
from typing import Mapping, Sequence

# What the processes need, imported once by the fork server (mmdet's
# registries as register_all_modules fills them, and this package).
PRELOAD = [
    'projects.res2net.engine.cli', 'mmdet.datasets', 'mmdet.engine',
    'mmdet.evaluation', 'mmdet.models', 'mmdet.visualization'
]


def forkserver() -> ForkServerContext:
    """multiprocessing's fork-server context, its server preloading
    :data:`PRELOAD` (one server per process, started at its first use)."""
    context = multiprocessing.get_context('forkserver')
    context.set_forkserver_preload(PRELOAD)
    return context


def _script(path: str, args: Sequence[str], log: str, cwd: str,
            environ: Mapping[str, str]) -> None:
    # The fork server started with the caller's directory and environment
    # of that time: the script gets those of its own start.
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(environ)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    sys.argv = [path, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(path))
    try:
        runpy.run_path(path, run_name='__main__')
    finally:
        # A forked process ends with os._exit: the interpreter's exit
        # handlers (train.py ends its loader workers in one) run here.
        atexit._run_exitfuncs()


def run_script(path: str, args: Sequence[str], *, log: str) -> int:
    """Run ``python PATH ARGS`` in a process forked from the fork server,
    in this process's working directory and environment, its stdout and
    stderr written to the file ``log``; wait for it.

    Returns:
        Its exit status: the script's ``sys.exit`` code, 1 for an uncaught
        exception (its traceback is in the log), ``-N`` for signal N.
    """
    process = forkserver().Process(
        target=_script,
        args=(path, list(args), log, os.getcwd(), dict(os.environ)))
    process.start()
    process.join()
    return process.exitcode

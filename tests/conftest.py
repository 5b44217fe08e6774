# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Fixtures shared by the tests: generated data and running the tools."""
import contextlib
import functools
import gc
import hashlib
import io
import json
import os
import re
import runpy
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import (Callable, Dict, Iterator, List, MutableMapping, NamedTuple,
                    Optional, Tuple, Union)

import pytest
import torch
from filelock import FileLock
from mmengine.config import Config
from mmengine.fileio import load
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from projects.res2net.datasets.demo_data import generate_demo_dataset
from projects.res2net.datasets.sample_streams import use_sample_streams
from projects.res2net.engine.preemption import stop_signals

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'

# The session's directory for what the test processes share (``make test``
# runs the suite in several with pytest-xdist): a run trained once for all
# of them, and the lines of the closing summary.
SHARED = 'RES2NET_TESTS_SHARED'

# The variables through which the caller's Slurm job would reach the runs
# that the tests start: inside a requeueable batch job, a test's stopped run
# would requeue the job running the suite, and SLURM_RESTART_COUNT would
# turn fresh runs into resumes; SBATCH_*/SRUN_* would change the test
# cluster's jobs. The tests that run on a cluster start their own.
CLUSTER_VARIABLES = ('SLURM_', 'SBATCH_', 'SALLOC_', 'SRUN_')


def leave_the_callers_cluster(environ: MutableMapping[str, str]) -> None:
    """Remove the caller's :data:`CLUSTER_VARIABLES` from ``environ``."""
    for name in [n for n in environ if n.startswith(CLUSTER_VARIABLES)]:
        del environ[name]


def pytest_configure(config) -> None:
    """The tests' environment without the caller's cluster job, the shared
    directory (made by the process that starts the session), and each test
    process's share of the CPU.

    Under pytest-xdist each of the ``n`` worker processes gets
    ``cores // n`` threads (torch's in-process ops, and the tools it starts,
    through ``OMP_NUM_THREADS``): two processes of two threads on a 2-core
    machine spin-wait on each other's cores and were no faster than one.
    """
    leave_the_callers_cluster(os.environ)
    if not hasattr(config, 'workerinput'):  # no worker of another process
        os.environ[SHARED] = tempfile.mkdtemp(prefix='res2net-tests-')
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
    if workers > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        torch.set_num_threads(threads)
        os.environ['OMP_NUM_THREADS'] = str(threads)


def pytest_unconfigure(config) -> None:
    if not hasattr(config, 'workerinput'):
        shutil.rmtree(os.environ.pop(SHARED), ignore_errors=True)


def _shared_dir() -> Path:
    return Path(os.environ[SHARED])


# Session fixtures that one test process must own: the Slurm cluster (one
# per machine) and the zoo run that the table tests read.
OWNED_FIXTURES = ('slurm', 'zoo_demo')


def _xdist_group(item) -> Optional[str]:
    """The test process group of a test: the owned fixture it uses, else
    its module when a module-scoped fixture serves several of its tests
    (built once in one process, not once in each)."""
    for name in OWNED_FIXTURES:
        if name in item.fixturenames:
            return name
    fixtures = item._fixtureinfo.name2fixturedefs.values()
    if any(defs[-1].scope == 'module' for defs in fixtures):
        return item.nodeid.split('::')[0]
    return None


def _run_order(item) -> Tuple[bool, bool]:
    """The longest first (launchers, cluster, training), then the other tool
    runs (tests/tools, tests/configs), then the unit tests: the short ones
    last, so that no process is left with a long one while the others have
    finished."""
    long = any(mark in item.keywords for mark in ('slurm', 'dist', 'slow'))
    return not long, item.nodeid.startswith('tests/projects/')


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``cuda`` skip, saying why, where torch sees no GPU
    (``make gpu-check`` runs them on a GPU machine); under pytest-xdist's
    ``--dist loadgroup`` tests that share a costly fixture run in one
    process (:func:`_xdist_group`)."""
    if getattr(config.option, 'loadgroup', False):  # set in xdist's workers
        for item in items:
            group = _xdist_group(item)
            if group is not None:
                item.add_marker(pytest.mark.xdist_group(group))
        items.sort(key=_run_order)
    _skip_cuda_tests_without_a_gpu(items)


def pytest_collection_finish(session) -> None:
    """Exempt what exists now from the cyclic garbage collector.

    mmengine's datasets call ``gc.collect()`` each time one is built, and a
    test process holds every module of torch, mmdet and the tests: each such
    collection walked 350,000 objects, 0.16-0.25 s on a 2-core machine, a
    few times per tool run in this process. Nothing imported is garbage; it
    moves to the permanent generation, which collections skip.
    """
    gc.freeze()


@pytest.hookimpl(tryfirst=True)  # before the test's fixtures are set up
def pytest_runtest_setup(item) -> None:
    """Fail a grouped test that pytest-xdist did not group: it would run
    apart from the fixture it shares (two Slurm clusters on one machine),
    as under pytest 9.2 (pytest-xdist issue #1386)."""
    if getattr(item.config.option, 'loadgroup', False) and \
            item.get_closest_marker('xdist_group') and '@' not in item.nodeid:
        pytest.fail(
            f'pytest-xdist did not group this test with the others that '
            f'share its fixture (pytest {pytest.__version__}): install '
            "requirements.txt's pytest, or run without -n",
            pytrace=False)


def _skip_cuda_tests_without_a_gpu(items) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU; torch sees none here '
                            '(make gpu-check runs these on a GPU machine)')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope='session')
def repo() -> Path:
    return REPO


@contextlib.contextmanager
def _in_memory(otherwise: Path) -> Iterator[Path]:
    """A new directory in memory (``/dev/shm``) where it has room, else
    ``otherwise``; removed at the end."""
    shm = Path('/dev/shm')
    if not shm.is_dir() or shutil.disk_usage(shm).free < 4 * 2**30:
        yield otherwise
        return
    path = Path(tempfile.mkdtemp(prefix='res2net-test-', dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ram_dir(tmp_path) -> Iterator[Path]:
    """A directory in memory (``/dev/shm``) where it has room, else
    ``tmp_path``; removed after the test. For runs that write checkpoints
    of hundreds of MB when the disk is not what is tested: a disk write
    costs the kernel several times as much (docs/development.md, "How
    long")."""
    with _in_memory(tmp_path) as path:
        yield path


@pytest.fixture(scope='session')
def session_ram_dir(tmp_path_factory) -> Iterator[Path]:
    """:func:`ram_dir` for the session's fixtures (removed at its end)."""
    with _in_memory(tmp_path_factory.mktemp('ram')) as path:
        yield path


@pytest.fixture(scope='session')
def tiny_demo_data(tmp_path_factory) -> Path:
    """Two training and two validation images: one step, one test pass."""
    root = tmp_path_factory.mktemp('tiny_demo')
    generate_demo_dataset(root / 'data', num_train=2, num_val=2, seed=1)
    return root / 'data'


def _quick(data_root, **overrides) -> List[str]:
    """--cfg-options for a short demo-config run on ``data_root``."""
    options = {
        'data_root': f'{data_root}/',
        'train_dataloader.batch_size': 2,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False,
        'test_dataloader.num_workers': 0,
        'test_dataloader.persistent_workers': False,
        'train_cfg.val_interval': 1000,
    }
    options.update(overrides)
    return ['--cfg-options'] + [f'{k}={v}' for k, v in options.items()]


@pytest.fixture(scope='session')
def quick() -> Callable[..., List[str]]:
    """``quick(data_root, **overrides)``: options for a short run."""
    return _quick


@pytest.fixture(scope='session')
def run_tool() -> Callable[..., subprocess.CompletedProcess]:
    """Run ``tools/<name>`` like a user would, from the repo root.

    ``env`` adds to (or overrides) this process's environment.
    """

    def run(tool: str,
            *args,
            env: Optional[Dict[str, str]] = None,
            timeout: float = 900) -> subprocess.CompletedProcess:
        env = {**os.environ, 'PYTHONUNBUFFERED': '1', **(env or {})}
        return subprocess.run(
            [sys.executable, f'tools/{tool}', *map(str, args)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout)

    return run


@contextlib.contextmanager
def _captured_output() -> Iterator[Tuple[io.StringIO, io.StringIO]]:
    """Capture what is written to file descriptors 1 and 2 meanwhile.

    ``sys.stdout`` and ``sys.stderr`` write straight through to those
    descriptors, so Python's output, C libraries' and child processes' keep
    their order, as in a terminal. On exit the two ``StringIO`` objects are
    filled. Streams bound before (mmengine's ``ProgressBar`` takes
    ``sys.stdout`` as a default argument) are not captured.
    """
    out, err = io.StringIO(), io.StringIO()
    saved_streams = sys.stdout, sys.stderr
    saved_fds, files = {}, {}
    for stream in saved_streams:
        stream.flush()
    try:
        for fd in (1, 2):
            files[fd] = tempfile.TemporaryFile()
            saved_fds[fd] = os.dup(fd)
            os.dup2(files[fd].fileno(), fd)
        sys.stdout, sys.stderr = (
            io.TextIOWrapper(
                io.FileIO(fd, 'w', closefd=False),
                encoding='utf-8',
                errors='replace',
                write_through=True) for fd in (1, 2))
        yield out, err
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved_streams
        for fd, saved in saved_fds.items():
            os.dup2(saved, fd)
            os.close(saved)
        for fd, buffer in ((1, out), (2, err)):
            if fd in files:
                files[fd].seek(0)
                buffer.write(files[fd].read().decode('utf-8', 'replace'))
                files[fd].close()


@contextlib.contextmanager
def _as_a_script(path: Path, args: List[str]) -> Iterator[None]:
    """``sys.argv`` and the working directory of ``python PATH ARGS``."""
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    sys.argv = [str(path), *args]
    os.chdir(REPO)
    try:
        yield
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)


def _manager_classes() -> List[type]:
    """mmengine's global-instance classes (logger, message hub, visualizers,
    default scope), each holding its own instances by name."""
    from mmengine.utils import ManagerMixin
    found, todo = [], [ManagerMixin]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@contextlib.contextmanager
def _own_mmengine_instances() -> Iterator[None]:
    """Drop the global instances that mmengine creates meanwhile.

    A Runner registers its logger, message hub and visualizer by name, and
    mmdet names its visualizer 'visualizer' in every config: a second Runner
    in the same process would reuse the first one's, writing its scalars
    into the first run's log dir. A run in its own process starts without
    them; so does a run here.
    """
    before = {cls: set(cls._instance_dict) for cls in _manager_classes()}
    try:
        yield
    finally:
        for cls in _manager_classes():
            for name in set(cls._instance_dict) - before.get(cls, set()):
                instance = cls._instance_dict.pop(name)
                for handler in getattr(instance, 'handlers', [])[:]:
                    handler.close()  # the logger's file handlers
                    instance.removeHandler(handler)


@pytest.fixture(autouse=True)
def _mmengine_instances_of_the_test() -> Iterator[None]:
    """Each test leaves mmengine's global instances as it found them.

    A Runner made in a test sets the default scope (the toy runs' is
    'mmengine'), and mmdet's registries build through the current one: a
    later test in the same process building ``Res2NetBackbone`` by name
    would not find it, depending on which tests ran before in its process.
    """
    with _own_mmengine_instances():
        yield


@pytest.fixture(scope='session')
def call_tool() -> Callable[..., subprocess.CompletedProcess]:
    """Run ``tools/<name>`` in this process, as ``run_tool`` would run it.

    The script runs as ``__main__`` from the repo root with its arguments
    in ``sys.argv``; its exit status, stdout and stderr come back as a
    ``CompletedProcess``, an uncaught exception as its traceback and status
    1, as the interpreter would print it; mmengine's global instances that
    it created are dropped again. This saves the interpreter's start
    and the imports of torch, mmcv and mmdet (about 3.5 s a run on a fast
    2-core machine): for tests of what a tool does, not of the process
    around it (environment, signals, launchers: use ``run_tool``). ``tool``
    is a path below ``tools/``, or the absolute path of another script
    (mmdet's tools).
    """

    def call(tool: Union[str, Path], *args) -> subprocess.CompletedProcess:
        path = REPO / 'tools' / tool  # an absolute path stays as it is
        argv = [str(a) for a in args]
        # A tool's --threads is its process's setting: not the next test's.
        threads = torch.get_num_threads()
        with _captured_output() as (out, err), _own_mmengine_instances():
            with _as_a_script(path, argv):
                try:
                    runpy.run_path(str(path), run_name='__main__')
                    code = 0
                except SystemExit as done:
                    code = done.code
                    if code is not None and not isinstance(code, int):
                        print(code, file=sys.stderr)
                        code = 1
                    code = code or 0
                except KeyboardInterrupt:
                    raise
                except BaseException:  # what the interpreter would print
                    traceback.print_exc()
                    code = 1
                finally:
                    torch.set_num_threads(threads)
                    # train.py takes the stop signals for its process and
                    # blocks them on this thread: a process started later
                    # would inherit the block.
                    stop_signals().restore()
        return subprocess.CompletedProcess(
            [sys.executable, f'tools/{tool}', *argv], code, out.getvalue(),
            err.getvalue())

    return call


def _user_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Assert that a tool stopped on a user error, as ``run_tool`` ran it:
    exit 2, no traceback, a last line ``error: ...`` holding every
    fragment. Returns that line."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: '), last
    for fragment in fragments:
        assert fragment in last, last
    return last


@pytest.fixture(scope='session')
def user_error() -> Callable[..., str]:
    """``user_error(result, *fragments)``: see :func:`_user_error`."""
    return _user_error


def _table_rows(text: str, start: str = '|') -> List[List[str]]:
    """The cells of each markdown table line in ``text`` that begins with
    ``start`` (``'| R2-101'``: a zoo table's R2-101 rows); ``\\|`` inside a
    cell (the link cell's) is not a border."""
    return [[cell.strip() for cell in re.split(r'(?<!\\)\|', line)[1:-1]]
            for line in text.splitlines() if line.startswith(start)]


@pytest.fixture(scope='session')
def table_rows() -> Callable[..., List[List[str]]]:
    """``table_rows(text, start='|')``: see :func:`_table_rows`."""
    return _table_rows


def _fps_cell(fps: float, label: str) -> str:
    """An fps cell as the zoo table prints it: one decimal, two below 10
    fps (CPU speeds), then where it was measured."""
    return f'{fps:.{1 if fps >= 10 else 2}f} ({label})'


@pytest.fixture(scope='session')
def fps_cell() -> Callable[[float, str], str]:
    """``fps_cell(fps, label)``: see :func:`_fps_cell`."""
    return _fps_cell


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BN statistic a distinct random value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            values = torch.randn(tensor.shape, generator=gen) * 0.1
            if name.endswith('running_var'):
                values = values.abs() + 0.5
            tensor.copy_(values)
    return model


@pytest.fixture(scope='session')
def randomise() -> Callable[..., nn.Module]:
    """Fill a model with random weights in place and return it."""
    return _randomise


def _outputs_and_gradients(model: nn.Module,
                           x: torch.Tensor) -> Tuple[list, dict]:
    """``model``'s outputs on ``x`` in training mode, and the gradients of
    its trainable parameters and of ``x`` after a backward pass that gives
    every output element a weight of its own (a wrong activation anywhere
    shows in the gradients, not only in their sums)."""
    model.train()
    inputs = x.clone().requires_grad_()
    outputs = model(inputs)
    weights = torch.Generator().manual_seed(1)
    sum((o * torch.randn(o.shape, generator=weights)).sum()
        for o in outputs).backward()
    grads = {k: p.grad for k, p in model.named_parameters() if p.requires_grad}
    grads['input'] = inputs.grad
    return outputs, grads


def _same_outputs_and_gradients(model: nn.Module, other: nn.Module,
                                x: torch.Tensor, outputs: int) -> None:
    """``other`` (e.g. checkpointed) gives ``model``'s ``outputs`` outputs
    and every gradient of :func:`_outputs_and_gradients`, to rounding."""
    outs, grads = zip(*(_outputs_and_gradients(m, x) for m in (model, other)))
    assert len(outs[0]) == len(outs[1]) == outputs
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert grads[0].keys() == grads[1].keys()
    assert all(g is not None for g in grads[0].values())
    for key, grad in grads[0].items():
        torch.testing.assert_close(
            grads[1][key], grad, rtol=1e-4, atol=1e-5, msg=key)


@pytest.fixture(scope='session')
def same_outputs_and_gradients() -> Callable[..., None]:
    """``same_outputs_and_gradients(model, other, x, outputs)``: see
    :func:`_same_outputs_and_gradients`."""
    return _same_outputs_and_gradients


def _condition_detector(model: nn.Module) -> nn.Module:
    """Weights whose detections are distinct, and BNs that fusing changes.

    On mmdet's initialisation (``build_detector`` gives a model without a
    checkpoint that), random BN statistics and affine terms (at their
    defaults fusing would change almost nothing), and class logits
    scaled up so that the scores spread over (0, 1) instead of all staying
    under the score threshold (or, with ``randomise``, all saturating at
    1.0, where NMS breaks ties arbitrarily).
    """
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=gen) / 10)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.add_(torch.randn(n, generator=gen) / 10)
                module.bias.copy_(torch.randn(n, generator=gen) / 10)
        model.roi_head.bbox_head.fc_cls.weight.mul_(10)
    return model


@pytest.fixture(scope='session')
def condition_detector() -> Callable[[nn.Module], nn.Module]:
    """Condition a freshly built detector in place for the deploy-form
    speed tests (see :func:`_condition_detector`) and return it."""
    return _condition_detector


def _write_log(work_dir, stamp='20240101_000000', lines=None):
    """A scalars.json as mmengine writes it, under ``work_dir``."""
    if lines is None:
        lines = [
            dict(lr=0.01, loss=2.0 - 0.1 * i, loss_cls=1.0, iter=i, step=i)
            for i in range(10, 110, 10)
        ]
        # mmengine logs a validation with step=epoch: 0 in an iteration
        # based run.
        lines.insert(5, {'coco/bbox_mAP': 0.1, 'time': 0.3, 'step': 0})
        lines.append({'coco/bbox_mAP': 0.2, 'time': 0.3, 'step': 0})
    path = work_dir / stamp / 'vis_data' / 'scalars.json'
    path.parent.mkdir(parents=True)
    path.write_text(''.join(json.dumps(line) + '\n' for line in lines))
    return path


@pytest.fixture(scope='session')
def write_log() -> Callable[..., Path]:
    """``write_log(work_dir, stamp, lines)``: see :func:`_write_log`."""
    return _write_log


def _val_images(data_root):
    """The validation images with their ground-truth boxes, most objects
    first."""
    coco = json.loads(
        (data_root / 'annotations' / 'instances_val2017.json').read_text())
    boxes = {image['id']: [] for image in coco['images']}
    for ann in coco['annotations']:
        boxes[ann['image_id']].append(ann['bbox'])
    images = [(data_root / 'val2017' / image['file_name'], boxes[image['id']],
               (image['height'], image['width'])) for image in coco['images']]
    return sorted(images, key=lambda item: -len(item[1]))


@pytest.fixture(scope='session')
def val_images() -> Callable[[Path], list]:
    """``val_images(data_root)``: see :func:`_val_images`."""
    return _val_images


def free_port() -> int:
    """A TCP port that nothing listens on now (for a rendezvous)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='session')
def dist_devices() -> Dict[str, str]:
    """The devices of the launcher tests, as environment variables.

    They run 2 processes: on 2 GPUs over nccl where there are that many,
    else on the CPU over gloo (one GPU cannot hold two ranks). A
    single-process run compared with them gets the same.
    """
    return {} if torch.cuda.device_count() >= 2 else {
        'CUDA_VISIBLE_DEVICES': ''
    }


@pytest.fixture
def launcher_env(dist_devices) -> Dict[str, str]:
    """The environment for the launcher scripts: this interpreter, a port."""
    return dict(
        os.environ,
        PYTHON=sys.executable,
        PYTHONUNBUFFERED='1',
        PORT=str(free_port()),
        **dist_devices)


class TrainedDemo(NamedTuple):
    root: Path  # data/ (the demo data) below it; every test process reads it
    work_dir: Path  # the run's work dir
    checkpoint: Path
    log: str  # the training run's log
    iterations: int

    @property
    def val_ann_file(self) -> Path:
        """The demo data's validation annotations (what test.py scores)."""
        return self.root / 'data' / 'annotations' / 'instances_val2017.json'


def _makefile_variable(name: str) -> str:
    """A ``NAME := value`` of the Makefile, the ``$(OTHER)`` in it
    expanded: where ``make demo`` works."""
    makefile = (REPO / 'Makefile').read_text()
    value = re.search(rf'^{name} := (\S+)$', makefile, re.M).group(1)
    return re.sub(r'\$\((\w+)\)', lambda other: _makefile_variable(other[1]),
                  value)


def _summary_note(line: str) -> None:
    """A line for the session's closing summary, from any test process."""
    with FileLock(str(_shared_dir() / 'summary.lock')):
        with open(_shared_dir() / 'summary.txt', 'a') as notes:
            notes.write(line + '\n')


def pytest_terminal_summary(terminalreporter) -> None:
    notes = _shared_dir() / 'summary.txt'
    if notes.is_file():
        for line in dict.fromkeys(notes.read_text().splitlines()):
            terminalreporter.write_line(line)


def _files(root: Path) -> Dict[str, str]:
    """``{relative path: sha256}`` of every file below ``root``."""
    return {
        str(path.relative_to(root)):
        hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob('*')) if path.is_file()
    }


def _run_config(text: str) -> dict:
    """A run's config without what the run's command sets beside the file
    (the work dir, the launcher, the checkpoints' file backend; with the
    loader wrappers that train.py adds, whether there or not) and what
    building the model writes into it (mmdet's two-stage detectors copy
    ``train_cfg.rcnn`` and ``test_cfg.rcnn`` into the RoI head's config)."""
    cfg = Config.fromstring(text, '.py').to_dict()
    # train.py gives the training samples their random streams.
    use_sample_streams(cfg)
    for key in ('work_dir', 'launcher'):
        cfg.pop(key, None)
    cfg.get('default_hooks', {}).get('checkpoint',
                                     {}).pop('backend_args', None)
    model = cfg.get('model', {})
    roi_head = model.get('roi_head') or {}
    for key in ('train_cfg', 'test_cfg'):
        if key in roi_head and roi_head[key] == (model.get(key)
                                                 or {}).get('rcnn'):
            del roi_head[key]
    return cfg


def _train_log(work_dir: Path) -> Optional[str]:
    """The log of the newest run in ``work_dir`` that trained."""
    logs = sorted(work_dir.glob('*/*.log'), key=lambda p: p.parent.name)
    for log in reversed(logs):
        text = log.read_text(errors='replace')
        if 'Iter(train)' in text:
            return text
    return None


def _make_demo_run(config: Config, data: Path,
                   on_cuda: bool) -> Tuple[Optional[tuple], str]:
    """``make demo``'s finished run of ``config`` (the demo config), if it
    is what the fixture would train.

    Checked, not assumed from its path: the checkpoint is the last one of a
    whole, unresumed run of the demo config as it is now, logged from its
    first iteration to its validation, on the device the fixture would
    train on; and the data in ``DEMO_DATA`` is byte for byte the demo data
    (``data``, just generated). Returns ``((work_dir, checkpoint, log),
    why)``, or ``(None, why not)``.
    """
    from projects.res2net.errors import UserError
    from projects.res2net.models.checkpoint import read_checkpoint

    work_dir = REPO / _makefile_variable('DEMO_WORK_DIR')
    iters = config.train_cfg.max_iters
    interval = config.default_hooks.logger.interval
    checkpoint = work_dir / f'iter_{iters}.pth'
    last = work_dir / 'last_checkpoint'
    if not last.is_file() or Path(last.read_text().strip()).resolve() != \
            checkpoint.resolve() or not checkpoint.is_file():
        return None, f'no finished `make demo` run in {work_dir}'
    try:
        meta = read_checkpoint(
            str(checkpoint), what='checkpoint',
            fix='train again').get('meta', {})
    except UserError as err:
        return None, str(err)
    if meta.get('iter') != iters or _run_config(meta.get(
            'cfg', '')) != _run_config(config.pretty_text):
        return None, f'{checkpoint} was trained from another config'
    log = _train_log(work_dir)
    logged = [
        int(it)
        for it in re.findall(r'Iter\(train\) \[ *(\d+)/\d+\]', log or '')
    ]
    if logged != list(range(interval, iters + 1, interval)) or \
            'coco/bbox_mAP: ' not in log:
        return None, f'{work_dir} holds no whole, unresumed run'
    if f'CUDA available: {on_cuda}' not in log:
        return None, f'{work_dir} was trained on another device'
    demo_data = REPO / _makefile_variable('DEMO_DATA')
    if not demo_data.is_dir() or _files(demo_data) != _files(data):
        return None, f'{demo_data} is not the demo data'
    return (work_dir, checkpoint, log), f'reused `make demo`\'s run in ' \
        f'{work_dir}'


@pytest.fixture(scope='session')
def trained_demo(run_tool, dist_devices) -> TrainedDemo:
    """``make demo``'s run: the demo config trained on the demo data.

    It serves the learning floor, the AP checks, the CAM maps, the
    inferencer and the launchers' AP. The run that ``make demo``
    made before the tests (CI runs it first) is reused when it is that run
    exactly (:func:`_make_demo_run`); otherwise the same command trains it
    here, once for all the session's test processes, on the devices of the
    launcher tests (the CPU unless there are 2 GPUs). The closing summary
    says which.
    """
    shared = _shared_dir()
    root = shared / 'learning'
    config = Config.fromfile(str(REPO / DEMO_CONFIG))
    iters = config.train_cfg.max_iters
    # The first process to get here generates the data, looks for make
    # demo's run and, without one, trains; the others read which it is.
    decided = shared / 'trained_demo.json'
    with FileLock(str(shared / 'trained_demo.lock')):
        if not decided.is_file():
            generate_demo_dataset(root / 'data')  # make demo's: the defaults
            found, why = _make_demo_run(
                config, root / 'data', on_cuda=not dist_devices)
            if found is None:
                work_dir = shared / 'trained_demo'
                why = f'trained in the session ({why})'
                result = run_tool(
                    'train.py',
                    DEMO_CONFIG,
                    '--work-dir',
                    work_dir,
                    '--cfg-options',
                    f'data_root={root}/data/',
                    env=dist_devices)
                assert result.returncode == 0, result.stderr[-3000:]
            else:
                work_dir = found[0]
            _summary_note(f'trained_demo: {why}')
            decided.write_text(json.dumps(dict(work_dir=str(work_dir))))
        work_dir = Path(json.loads(decided.read_text())['work_dir'])
    checkpoint = work_dir / f'iter_{iters}.pth'
    return TrainedDemo(root, work_dir, checkpoint, _train_log(work_dir), iters)


class DemoPredictions(NamedTuple):
    data: Path  # the demo data the detector was tested on
    ann_file: Path  # its validation images' annotation file
    pickle: Path  # test.py --out: the predictions, in mmdet's format
    prefix: Path  # the evaluator's COCO result files: <prefix>.bbox.json
    metrics: dict  # test.py's metrics.json


def _make_demo_predictions(trained_demo: TrainedDemo
                           ) -> Optional[Tuple[Path, Path, Path]]:
    """``make demo``'s test of the checkpoint that ``trained_demo`` reused:
    its ``metrics.json``, ``--out`` pickle and COCO results prefix, if that
    test ran on that checkpoint after it was saved, on every validation
    image; else None."""
    work_dir = REPO / _makefile_variable('DEMO_WORK_DIR')
    results = REPO / _makefile_variable('DEMO_RESULTS')
    metrics = work_dir / 'metrics.json'
    pickle = Path(f'{results}.pkl')
    written = (metrics, pickle, Path(f'{results}.bbox.json'))
    if trained_demo.work_dir.resolve() != work_dir.resolve() or not all(
            path.is_file() for path in written):
        return None
    saved = trained_demo.checkpoint.stat().st_mtime
    report = json.loads(metrics.read_text())
    if Path(report['checkpoint']).resolve() != \
            trained_demo.checkpoint.resolve() or \
            report['config'] != DEMO_CONFIG or \
            any(path.stat().st_mtime < saved for path in written):
        return None
    images = {
        image['id']
        for image in json.loads(trained_demo.val_ann_file.read_text())
        ['images']
    }
    tested = [sample['img_id'] for sample in load(pickle)]
    if sorted(tested) != sorted(images):
        return None
    return metrics, pickle, results


@pytest.fixture(scope='session')
def tested_demo(trained_demo, call_tool) -> DemoPredictions:
    """tools/test.py on the trained demo checkpoint, once for the session's
    test processes: on all 100 validation images (the evaluator scores
    every image of its annotation file), with the predictions kept as
    ``--out``'s pickle and as the evaluator's COCO result files. For the
    tests that re-evaluate or analyse one detector's predictions: mmdet's
    tools, pycocotools, FasterCocoMetric against CocoMetric.

    ``make demo`` tests its checkpoint so: where ``trained_demo`` is its
    run, its test is reused when it is that checkpoint's
    (:func:`_make_demo_predictions`); otherwise the same command tests it
    here. The closing summary says which.
    """
    shared = _shared_dir()
    data = trained_demo.root / 'data'
    decided = shared / 'tested_demo.json'
    with FileLock(str(shared / 'tested_demo.lock')):
        if not decided.is_file():
            found = _make_demo_predictions(trained_demo)
            if found is None:
                work_dir = shared / 'tested_demo'
                results = work_dir / 'results'
                found = (work_dir / 'metrics.json', Path(f'{results}.pkl'),
                         results)
                result = call_tool(
                    'test.py', DEMO_CONFIG, trained_demo.checkpoint,
                    '--work-dir', work_dir, '--out', found[1],
                    *_quick(data, **{'test_evaluator.outfile_prefix':
                                     results}))
                assert result.returncode == 0, result.stderr[-3000:]
                _summary_note('tested_demo: tested in the session')
            else:
                _summary_note(f'tested_demo: reused `make demo`\'s test '
                              f'in {found[0].parent}')
            decided.write_text(json.dumps([str(path) for path in found]))
        metrics, pickle, prefix = map(Path, json.loads(decided.read_text()))
    metrics = json.loads(metrics.read_text())['metrics']
    assert metrics['coco/bbox_mAP'] > 0.1  # a trained detector's boxes
    return DemoPredictions(data, trained_demo.val_ann_file, pickle, prefix,
                           metrics)


def _evaluated(metric, samples: List[dict]) -> Dict[str, float]:
    """What an mmdet metric (``CocoMetric`` or one like it) computes of
    ``samples``, predictions as ``test.py --out`` keeps them, for a dataset
    of COCO's classes (the demo data's)."""
    from mmdet.datasets import CocoDataset

    metric.dataset_meta = dict(classes=CocoDataset.METAINFO['classes'])
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


@pytest.fixture(scope='session')
def evaluate() -> Callable[..., Dict[str, float]]:
    """``evaluate(metric, samples)``: see :func:`_evaluated`."""
    return _evaluated


class DemoSubset(NamedTuple):
    options: List[str]  # --cfg-options that test on the subset alone
    metrics: dict  # the evaluator's metrics of tested_demo's predictions


@pytest.fixture(scope='session')
def demo_subset(tested_demo, tmp_path_factory) -> DemoSubset:
    """The first 10 of the demo's validation images as a test set of their
    own (an annotation file of those images), and the metrics that the demo
    config's evaluator gives ``tested_demo``'s predictions on them, computed
    in this process: a checkpoint tested there gives these when it is the
    trained demo detector, for a tenth of the images."""
    from mmdet.registry import METRICS

    coco = json.loads(tested_demo.ann_file.read_text())
    coco['images'] = coco['images'][:10]
    kept = {image['id'] for image in coco['images']}
    coco['annotations'] = [
        a for a in coco['annotations'] if a['image_id'] in kept
    ]
    ann_file = tmp_path_factory.mktemp('demo_subset') / 'val10.json'
    ann_file.write_text(json.dumps(coco))
    config = Config.fromfile(str(REPO / DEMO_CONFIG))
    metric = METRICS.build(dict(config.test_evaluator, ann_file=str(ann_file)))
    samples = [s for s in load(tested_demo.pickle) if s['img_id'] in kept]
    metrics = {
        f'coco/{key}': value
        for key, value in _evaluated(metric, samples).items()
    }
    assert metrics['coco/bbox_mAP'] > 0.1  # a meaningful comparison
    return DemoSubset([
        f'test_dataloader.dataset.ann_file={ann_file}',
        f'test_evaluator.ann_file={ann_file}'
    ], metrics)


class Served(NamedTuple):
    url: str  # the folder's URL, ending in '/'
    requests: List[str]  # the paths asked for, in order


@pytest.fixture
def serve_http(tmp_path, monkeypatch) -> Iterator[Callable[[Path], Served]]:
    """``serve_http(folder)``: the folder's files over ``http://`` from this
    process (127.0.0.1) for the test, as a model zoo serves checkpoints;
    torch's hub cache, where remote checkpoints are downloaded to, in
    ``tmp_path``."""
    servers = []
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setattr(torch.hub, '_hub_dir', None)  # from TORCH_HOME

    def serve(folder: Path) -> Served:
        requests = []

        class Handler(SimpleHTTPRequestHandler):

            def log_message(self, format, *args) -> None:
                requests.append(self.path)

        server = ThreadingHTTPServer(
            ('127.0.0.1', 0),
            functools.partial(Handler, directory=str(folder)))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return Served(f'http://127.0.0.1:{server.server_port}/', requests)

    try:
        yield serve
    finally:
        for server, thread in servers:
            server.shutdown()
            server.server_close()
            thread.join()

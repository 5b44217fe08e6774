# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Distributed runs on CUDA (nccl) and on CPU-only machines (gloo).

mmengine's launchers call ``torch.cuda.set_device`` unconditionally, and its
Runner wraps the model in DDP with ``device_ids=[LOCAL_RANK]``; both fail on a
machine without a GPU. mmengine offers two extension points that avoid
patching it, and this module uses both:

* the Runner skips ``init_dist`` when a process group already exists, so the
  tools start one here (:func:`init_process_group`), for every launcher and
  device, from the variables that torchrun, Slurm or Open MPI set;
* the DDP wrapper is built from ``model_wrapper_cfg``, which on a CPU gets
  ``device_ids=None`` (:func:`configure_distributed`).

The backend is chosen by :func:`choose_backend`: ``auto`` keeps the config's
``env_cfg.dist_cfg.backend`` (mmdet's default is nccl) where it can work and
takes gloo where it cannot; ``--dist-backend`` forces one.
"""
import datetime
import gc
import os
import subprocess
import time
from typing import Any, Dict, Mapping, MutableMapping, Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

from ..errors import UserError

BACKENDS = ('auto', 'nccl', 'gloo')
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')

# The launcher-specific variables each launcher sets for its tasks.
_LAUNCHER_VARIABLES = {
    'pytorch':
    ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'),
    'slurm':
    ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID', 'SLURM_STEP_NODELIST'),
    'mpi': ('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE',
            'OMPI_COMM_WORLD_LOCAL_RANK', 'MASTER_ADDR'),
}
_HOW_TO_START = {
    'pytorch': 'start it with tools/dist_train.sh or tools/dist_test.sh',
    'slurm': 'start it with tools/slurm_train.sh or tools/slurm_test.sh',
    'mpi': 'start it with mpirun and export MASTER_ADDR',
}


def choose_backend(requested: str, configured: Optional[str], *,
                   cuda: bool) -> str:
    """The process-group backend for this machine.

    Args:
        requested: ``--dist-backend``: ``'auto'``, ``'nccl'`` or ``'gloo'``.
        configured: The config's ``env_cfg.dist_cfg.backend``, if any.
        cuda: Whether this process sees a CUDA GPU.

    Returns:
        ``requested`` unless it is ``'auto'``. ``'auto'`` gives the configured
        backend, except that nccl (mmdet's default, GPU-only) becomes gloo on
        a machine without a GPU; with nothing configured, nccl on CUDA and
        gloo otherwise.

    Raises:
        UserError: nccl is forced on a machine without a GPU.
    """
    if requested not in BACKENDS:
        raise UserError(f'--dist-backend {requested}: choose one of '
                        f'{", ".join(BACKENDS)}')
    if requested == 'nccl' and not cuda:
        raise UserError('--dist-backend nccl needs a CUDA GPU and none is '
                        'visible here; use --dist-backend gloo (or auto)')
    if requested != 'auto':
        return requested
    if configured and (configured != 'nccl' or cuda):
        return configured
    return 'nccl' if cuda else 'gloo'


def _require(env: Mapping[str, str], launcher: str) -> None:
    missing = [
        name for name in _LAUNCHER_VARIABLES[launcher] if name not in env
    ]
    if missing:
        raise UserError(
            f'--launcher {launcher}: this process was not started by its '
            f'launcher ({", ".join(missing)} not set); '
            f'{_HOW_TO_START[launcher]}, or drop --launcher for one process')


def export_rank_variables(launcher: str,
                          env: MutableMapping[str, str] = os.environ) -> None:
    """Set torch's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_*``.

    torchrun sets them itself. Under Slurm and Open MPI they are derived from
    the launcher's own variables as mmengine does: the master is the first
    host of the Slurm step (``MASTER_ADDR`` wins if set), the port
    ``MASTER_PORT``, else ``PORT``, else 29500.

    Follows ``_init_dist_slurm`` and ``_init_dist_mpi`` of mmengine 0.10's
    ``mmengine/dist/utils.py`` (OpenMMLab, Apache-2.0), their variables
    only: both go on to call ``torch.cuda.set_device`` whatever the machine
    (:func:`init_process_group` does the rest, on a CPU too). Unlike them,
    the master is the first host of this ``srun`` step
    (``SLURM_STEP_NODELIST``, where mmengine reads the job's
    ``SLURM_NODELIST``), ``PORT`` is read (the launch scripts' name for
    the port, as in mmdet's ``dist_train.sh``), and a variable missing is
    one line (:func:`_require`), not a ``KeyError``.

    Raises:
        UserError: The process was not started by ``launcher``.
    """
    _require(env, launcher)
    if launcher == 'slurm':
        env['RANK'] = env['SLURM_PROCID']
        env['WORLD_SIZE'] = env['SLURM_NTASKS']
        env['LOCAL_RANK'] = env['SLURM_LOCALID']
        if 'MASTER_ADDR' not in env:
            hosts = subprocess.run(
                ['scontrol', 'show', 'hostnames', env['SLURM_STEP_NODELIST']],
                capture_output=True,
                text=True,
                check=True).stdout.split()
            env['MASTER_ADDR'] = hosts[0]
    elif launcher == 'mpi':
        env['RANK'] = env['OMPI_COMM_WORLD_RANK']
        env['WORLD_SIZE'] = env['OMPI_COMM_WORLD_SIZE']
        env['LOCAL_RANK'] = env['OMPI_COMM_WORLD_LOCAL_RANK']
    if 'MASTER_PORT' not in env:
        env['MASTER_PORT'] = env.get('PORT', '29500')


def init_process_group(launcher: str, dist_cfg: Mapping[str, Any]) -> None:
    """Join the job's process group, on a GPU or on the CPU.

    mmengine's ``init_dist`` (``mmengine/dist/utils.py``, OpenMMLab,
    Apache-2.0) with what a CPU needs: the same ``dist_cfg`` (``timeout``
    in seconds made a ``timedelta``, as there) and one GPU per process
    where there are GPUs, but no ``torch.cuda.set_device`` without one.

    Args:
        launcher: ``'pytorch'`` (torchrun), ``'slurm'`` or ``'mpi'``.
        dist_cfg: The config's ``env_cfg.dist_cfg``: ``backend`` (already
            chosen) and keyword arguments of ``init_process_group``, with
            ``timeout`` in seconds as in mmengine.
    """
    if torch_dist.is_initialized():
        return
    export_rank_variables(launcher)
    kwargs: Dict[str, Any] = dict(dist_cfg)
    backend = kwargs.pop('backend')
    if kwargs.get('timeout') is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
    if torch.cuda.is_available():
        # One GPU per process, as mmengine's launchers do.
        local_rank = int(os.environ['LOCAL_RANK'])
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    torch_dist.init_process_group(
        backend=backend,
        init_method='env://',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **kwargs)


# How long close_process_group gives gloo's threads to release the tensors
# of the last collectives: microseconds of work, and a loaded 2-core machine
# schedules a waiting thread within tens of milliseconds.
_THREADS_FINISH_S = 0.1


def close_process_group() -> None:
    """Leave the process group, if this process joined one, and free it.

    A gloo group's worker threads release the tensors of the last
    collectives (mmengine's final ``broadcast_object_list`` of the metrics,
    say) after the caller has seen them complete. If the interpreter is
    already shutting down when one does, the thread cannot take the GIL and
    the process aborts ("terminate called without an active exception",
    SIGABRT) although its work is done: about one 2-process CPU run in ten
    here. The group is freed, and its threads joined, only when its last
    reference goes; the Runner's DDP wrapper holds one inside the Runner's
    reference cycles: so the group is destroyed, then those cycles are
    collected, which frees it. Call it after the Runner's frame is gone.

    Freeing the group takes the lock under which its threads release those
    tensors, while holding the GIL that a thread needs to release one: a
    thread still at it then waits for the GIL and the process for the lock,
    for ever (seen once in a test process that had just broadcast). So the
    GIL is given up first, for the threads to finish.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    time.sleep(_THREADS_FINISH_S)
    torch_dist.destroy_process_group()
    gc.collect()  # the Runner's DDP wrapper held the group's last reference


def configure_distributed(cfg: Config, requested_backend: str) -> None:
    """Prepare ``cfg`` for ``cfg.launcher``: backend and DDP wrapper.

    Sets ``env_cfg.dist_cfg.backend`` to the chosen backend, so that the
    config the Runner dumps says what ran. On a machine without a GPU, a DDP
    wrapper gets ``device_ids=None`` (DDP's CPU mode) instead of mmengine's
    ``[LOCAL_RANK]``; the rest of mmengine's default wrapper is kept.

    Raises:
        UserError: ``--dist-backend`` is given without a launcher, or forces
            a backend this machine cannot run.
    """
    if cfg.launcher == 'none':
        if requested_backend != 'auto':
            raise UserError(
                f'--dist-backend {requested_backend} applies to distributed '
                'runs only; add --launcher pytorch|slurm|mpi or drop it')
        return
    cuda = torch.cuda.is_available()
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = choose_backend(
        requested_backend, dist_cfg.get('backend'), cuda=cuda)
    if cuda:
        return
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        # mmengine's own default wrapper, as Runner.wrap_model builds it.
        wrapper = dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_type = MODEL_WRAPPERS.get(
        wrapper.get('type', 'MMDistributedDataParallel'))
    if isinstance(wrapper_type, type) and issubclass(wrapper_type,
                                                     DistributedDataParallel):
        wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper

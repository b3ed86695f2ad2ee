"""Multi-process training on torch's own engine (``torchrun`` + DDP).

``ImageToMusic.fit`` calls :func:`context` once: under ``torchrun`` (the
``WORLD_SIZE``/``RANK`` variables are set) it joins the process group, with
gloo on the CPU and nccl on CUDA, and wraps the trained modules in
DistributedDataParallel; in a plain process it is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistContext", "context"]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run.

    Attributes
    ----------
    rank : int, default 0
        This process's rank among ``world_size``.
    world_size : int, default 1
        Number of processes; 1 means not distributed.
    local_rank : int, default 0
        Rank on this machine (its GPU index under CUDA).
    owns_group : bool, default False
        Whether this context created the process group (and :meth:`close` destroys it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """Whether the run has more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and prints progress."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: one GPU per local rank under CUDA.

        Parameters
        ----------
        device : torch.device
            The device the run was asked for.

        Returns
        -------
        torch.device
            ``cuda:<local_rank>`` when distributed on CUDA, else ``device`` unchanged.
        """
        if device.type == "cuda" and self.enabled:
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """Wrap a trained module in DDP when running distributed.

        Parameters
        ----------
        module : torch.nn.Module
            The module to train.
        device : torch.device
            Its device (from :meth:`device`).

        Returns
        -------
        torch.nn.Module
            A ``DistributedDataParallel`` wrapper when distributed, else ``module``.
        """
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def barrier(self) -> None:
        """Wait for every process (a no-op when not distributed)."""
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def context(device: torch.device) -> DistContext:
    """Join the process group ``torchrun`` describes, if any.

    Reads ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; initialises the group
    (NCCL on CUDA, Gloo otherwise) unless one already exists.

    Parameters
    ----------
    device : torch.device
        The device the run was asked for; picks the backend.

    Returns
    -------
    DistContext
        A single-process context when ``WORLD_SIZE`` is unset or 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
        owns = True
    return DistContext(rank=rank, world_size=world, local_rank=local, owns_group=owns)

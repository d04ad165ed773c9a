"""Several processes, one result: what a command needs when ``torchrun`` starts it N times.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in every process it starts; a command
that finds them joins the process group (gloo on CPU, nccl on CUDA) and learns which share of the
work is its own. Without them it is the one process of a world of one, and nothing here talks to
another process. Work is split by global index (sample i, batch j), never by rank alone, so what a
run computes does not depend on how many processes computed it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

DEVICES = ("auto", "cpu", "cuda", "mps")


class DistributedError(ValueError):
    pass


def best_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: CUDA, else Apple's MPS, else the CPU. Under torchrun each process takes the
    GPU of its local rank."""
    if name not in DEVICES:
        raise DistributedError(f"unknown device {name!r}; choose one of {DEVICES}")
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DistributedError("--device cuda: this machine has no CUDA GPU (or torch was built without CUDA)")
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                "start at most one process per GPU (torchrun --nproc_per_node)"
            )
        return torch.device("cuda", local_rank)
    if name == "mps" and not torch.backends.mps.is_available():
        raise DistributedError("--device mps: this machine has no Apple GPU")
    return torch.device(name)


def compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 where it is fast (CUDA GPUs with bf16 tensor cores), float32 everywhere else: on CPUs
    and MPS bf16 autocast costs more than it saves."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def expected_dtype(name: str) -> torch.dtype:
    """The compute dtype a run on device ``name`` will use, known without that device (for an
    estimate made on another machine: ``cuda`` means a GPU with bf16)."""
    if name == "cuda":
        return torch.bfloat16
    if name in ("cpu", "mps"):
        return torch.float32
    return compute_dtype(best_device(name))


@dataclass
class World:
    """This process's place among the processes torchrun started (a world of one without it)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Rank 0 alone shows progress and writes files."""
        return self.rank == 0

    @property
    def dtype(self) -> torch.dtype:
        return compute_dtype(self.device)

    def autocast(self):
        """bf16 autocast on a device where it pays, a no-op elsewhere."""
        enabled = self.dtype != torch.float32
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=enabled)

    def split(self, total: int, what: str) -> int:
        """This process's share of ``total`` items (a global batch): the same for every rank."""
        if total % self.size:
            raise DistributedError(
                f"{what} {total} does not split evenly over {self.size} processes; "
                f"give a multiple of {self.size} (it is the global {what}, whatever the process count)"
            )
        return total // self.size

    def blocks(self, count: int) -> range:
        """The contiguous run of ``count`` work units (batches) this rank does, in global order."""
        return range(self.rank * count // self.size, (self.rank + 1) * count // self.size)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The average over processes (each rank's share is the same size)."""
        if self.size == 1:
            return value
        value = value.detach().clone()
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.SUM)
        return value / self.size

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum over processes: shares written into zeros add up to the whole, exactly."""
        if self.size == 1:
            return value
        value = value.clone()
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.SUM)
        return value

    def barrier(self) -> None:
        """Every rank got here: nothing failed, so rank 0 may write."""
        if self.size > 1:
            torch.distributed.barrier()

    def data_parallel(self, module: nn.Module, find_unused: bool = True) -> nn.Module:
        """``module`` wrapped in DistributedDataParallel (gradients averaged in the backward pass);
        itself in a world of one. ``find_unused``: parameters an iteration does not use (the
        gates of other steps) get no gradient on any rank, as in one process."""
        if self.size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused)


def launched() -> bool:
    """Started by torchrun (or anything that sets its environment)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank_is_main() -> bool:
    """Rank 0 of a torchrun world, or a process started alone: the one that reports."""
    return os.environ.get("RANK", "0") == "0"


def rank_label() -> str:
    """``rank 1 of 2: `` under torchrun, empty otherwise: for error messages."""
    if not launched():
        return ""
    return f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}: "


@contextmanager
def world(device: str = "auto") -> Iterator[World]:
    """The process group for the duration of a command: gloo on CPU, nccl on CUDA."""
    if not launched():
        yield World(device=best_device(device))
        return
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    chosen = best_device(device, local_rank)
    if chosen.type == "mps" and size > 1:
        raise DistributedError("several processes on MPS are not supported (no collective backend); use one")
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    backend = "nccl" if chosen.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend, rank=rank, world_size=size)
    try:
        yield World(rank, size, local_rank, chosen)
    finally:
        torch.distributed.destroy_process_group()

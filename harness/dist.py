"""Who this process is in a run: rank, world size and device, from the `torchrun` environment.

`toto-eval` scales out on `torchrun` (`torchrun --nproc_per_node N -m toto_eval.harness.cli run ...`), never on
cluster code of its own: torchrun sets RANK / WORLD_SIZE / LOCAL_RANK, `init` joins the process group (NCCL on
CUDA, gloo on CPU, so the distributed paths are tested on a laptop), and everything here is a no-op in a single
process. Collectives are thin wrappers so callers read as what they mean (`dist.sum_(t)`), not as plumbing.
"""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as td

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes results and completion markers."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            td.barrier()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place sum over ranks (gradients, counts); returns the tensor."""
        return self._reduce(tensor, td.ReduceOp.SUM)

    def max_(self, tensor: torch.Tensor) -> torch.Tensor:
        return self._reduce(tensor, td.ReduceOp.MAX)

    def _reduce(self, tensor: torch.Tensor, op: td.ReduceOp) -> torch.Tensor:
        if not self.active:
            return tensor
        if tensor.device == self.device:
            td.all_reduce(tensor, op=op)
            return tensor
        moved = tensor.to(self.device)  # NCCL reduces on the GPU only
        td.all_reduce(moved, op=op)
        return tensor.copy_(moved)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (small Python objects: row lists, skipped-file reasons)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        td.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        td.broadcast_object_list(box, src=0)
        return box[0]


def init(device: str = "cpu") -> Dist:
    """The process's place in the run; joins the process group when launched by torchrun with WORLD_SIZE > 1.

    `device` is what the user asked for ("cpu", "cuda", "cuda:1"); under torchrun a CUDA run uses the GPU of
    LOCAL_RANK, so N processes on one node use N GPUs.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dev = torch.device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if world > 1 and not td.is_initialized():
        td.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        atexit.register(_leave)
    return Dist(rank, world, dev)


LEAVE_TIMEOUT = timedelta(seconds=60)  # how long a rank waits at exit for the others (a crashed one never comes)


def _leave() -> None:
    """Leave the process group before the interpreter tears down, after the other ranks have got here too.

    A gloo rank that tears its group down while a peer still holds connections to it can abort that peer
    ("terminate called without an active exception"): destroying the group at exit was not enough, the 2-rank
    tests still aborted in 2 runs of 6 on a 2-core machine (0 of 16 after). So gloo ranks meet at a barrier first; a
    monitored one, bounded, because after a crash the peers may never arrive (then this rank leaves anyway).
    """
    if not td.is_initialized():
        return
    if td.get_backend() == "gloo":
        try:
            td.monitored_barrier(timeout=LEAVE_TIMEOUT)
        except RuntimeError as err:  # a peer crashed or is stuck: say so, then leave as before
            log.warning("leaving the process group without the other ranks: %s", str(err).splitlines()[0])
    td.destroy_process_group()


def current() -> Dist:
    """The Dist of an already-initialised process group (or the single process)."""
    if td.is_available() and td.is_initialized():
        rank, world = td.get_rank(), td.get_world_size()
        backend = td.get_backend()
        dev = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        return Dist(rank, world, dev)
    return Dist()


def shard(items: list, dist: Dist) -> list:
    """This rank's share of `items`: every world-th item starting at its rank (disjoint, all covered)."""
    return items[dist.rank :: dist.world]

"""Data-parallel training across processes: ``torchrun --nproc_per_node=N -m training ...``.

`training.fit.fit` calls the hooks below; with one process (no ``torchrun``) every hook is a no-op, so the
single-process run is unchanged bit for bit.

How a step works with N ranks. Every rank holds the whole data set and the same model (rank 0's parameters
are broadcast when fitting starts). Each epoch rank 0's shuffle is broadcast, so all ranks walk the same
global minibatches; rank r computes the loss of its contiguous 1/N share of each one (`shard`), back-propagates,
and the gradients are summed across ranks with each rank's share weighted by its fraction of the rows
(`all_reduce_gradients`). Every rank then takes the same optimizer step on the same gradient: the result is
the single-process step of the same global batch, up to float summation order.

Why not `DistributedDataParallel`: our loss functions call a network's submodules directly (the MF loss reads
``user_factors`` and the biases to regularise exactly the rows a batch touches), not through ``forward``, and
DDP only synchronises gradients of a forward it wrapped. DDP also cannot all-reduce sparse gradients on NCCL.

Sparse gradients (the MF's embedding tables, fitted with SparseAdam) never travel as sparse tensors, which
NCCL does not reduce and gloo handles poorly for padded embeddings. A small table (`SMALL_TABLE`) travels as
dense rows plus a touched-row mask inside the step's one all-reduce of the dense gradients; a large one is
coalesced to (row index, row value) pairs, padded to the largest count across ranks, ``all_gather``-ed as one
dense buffer and trimmed back by the gathered counts, so its traffic follows the rows a step touches, not the
table size. Either way the result is one sparse gradient on the union of the touched rows, which is what
SparseAdam then updates (the rows a single process would touch with the whole batch). A flag per parameter
keeps ``grad = None`` where no rank produced a gradient, so the optimizer skips it as in a single process.
Only dense collectives are used, so gloo (CPU tensors) and NCCL (CUDA tensors) both work: the process group
is ``cpu:gloo,cuda:nccl`` where CUDA is available.

Every rank evaluates (no collectives there); rank 0 exports (`training.pipeline.run`).
"""

from __future__ import annotations

import datetime
import logging
import os

import torch
import torch.distributed as dist
from torch import Tensor, nn

log = logging.getLogger(__name__)

# Rank 0 exports while the others wait at the next collective (or exit); a large export can take a while.
TIMEOUT = datetime.timedelta(minutes=30)
# Sparse tables up to this many elements (4 MB of float32: ML-100K's are ~0.1 M) are all-reduced as dense rows
# in the same single collective as the dense gradients: on a busy machine every extra collective per step is
# another wait for the slowest rank, and that, not the bytes, dominated. Larger tables (ML-25M's users: ~10 M)
# are gathered as (row, value) pairs, whose traffic follows the rows a step touches, not the table.
SMALL_TABLE = 1 << 20


def init_from_env() -> bool:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``...).

    Returns True when running under a launcher, False (and nothing done) in a plain single process.
    """
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return dist.is_initialized()
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    log.info("rank %d of %d (%s)", rank(), world_size(), backend)
    return True


def shutdown(*, together: bool) -> None:
    """Leave the process group. `together` (a normal end) first waits for every rank: a rank tearing down its
    gloo pairs while another still uses them aborts the process. After an error no rank waits for the others."""
    if dist.is_initialized():
        if together and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_primary() -> bool:
    """The rank that exports and prints: rank 0, or the only process."""
    return rank() == 0


def _active() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def sync_parameters(model: nn.Module) -> None:
    """Start every rank from rank 0's parameters and buffers, and give each rank its own dropout stream."""
    if not _active():
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)
    # Identical seeds would draw identical dropout masks on every rank's different rows.
    torch.manual_seed(torch.initial_seed() + rank())


def broadcast_(tensor: Tensor) -> Tensor:
    """Overwrite `tensor` with rank 0's (e.g. the epoch's shuffle), in place; returns it."""
    if _active():
        dist.broadcast(tensor, src=0)
    return tensor


def broadcast_value(value: float) -> float:
    """Rank 0's `value` on every rank, so decisions taken on it (early stopping) agree everywhere."""
    if not _active():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(t, src=0)
    return float(t.item())


def sum_value(value: float) -> float:
    if not _active():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def shard(lo: int, rows: int) -> slice | None:
    """This rank's contiguous share of the global minibatch ``[lo, lo + rows)``; None when the batch has fewer
    rows than there are ranks (every rank skips it alike: at most N - 1 rows of an epoch)."""
    n = world_size()
    if rows < n:
        return None
    r = rank()
    return slice(lo + rows * r // n, lo + rows * (r + 1) // n)


def _sparse_parameters(model: nn.Module) -> set[int]:
    """Ids of the parameters whose gradients are sparse: decided by the modules, never by one rank's grads."""
    return {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding | nn.EmbeddingBag) and m.sparse}


def all_reduce_gradients(model: nn.Module, weight: float, *, dense_limit: int | None = None) -> None:
    """Replace every rank's gradients with ``sum over ranks of weight_r * grad_r`` (see the module docstring).

    Parameters
    ----------
    weight : this rank's share of the global batch's rows, so the sum is the gradient of the batch mean.
    dense_limit : sparse tables of at most this many elements ride in the dense all-reduce (default
        `SMALL_TABLE`); larger ones are gathered as row index/value pairs.
    """
    if not _active():
        return
    limit = SMALL_TABLE if dense_limit is None else dense_limit
    sparse_ids = _sparse_parameters(model)
    params = [p for p in model.parameters() if p.requires_grad]
    dense = [p for p in params if id(p) not in sparse_ids]
    small = [p for p in params if id(p) in sparse_ids and p.numel() <= limit]
    large = [p for p in params if id(p) in sparse_ids and p.numel() > limit]
    if dense or small:
        _reduce_dense(dense, small, weight)
    if large:
        _gather_sparse(large, weight)


def _reduce_dense(dense: list[nn.Parameter], small: list[nn.Parameter], weight: float) -> None:
    """One all-reduce for the dense gradients, a had-a-gradient flag per parameter, and the small sparse tables
    as dense rows plus a touched-row mask (the union of the rows any rank touched)."""
    params = [*dense, *small]
    device = params[0].device
    parts = []
    for p in dense:
        parts.append((p.grad * weight if p.grad is not None else torch.zeros_like(p)).reshape(-1))
    for p in small:
        rows = torch.zeros(p.shape[0], dtype=p.dtype, device=device)
        if p.grad is None:
            parts += [torch.zeros_like(p).reshape(-1), rows]
        else:
            g = p.grad.coalesce()
            rows[g.indices()[0]] = 1.0
            parts += [(g.to_dense() * weight).reshape(-1), rows]
    parts.append(torch.tensor([p.grad is not None for p in params], dtype=params[0].dtype, device=device))
    flat = torch.cat(parts)
    dist.all_reduce(flat)
    had = flat[-len(params) :].tolist()
    offset = 0
    for p, any_rank in zip(dense, had, strict=False):
        size = p.numel()
        p.grad = flat[offset : offset + size].view_as(p).clone() if any_rank else None
        offset += size
    for p, any_rank in zip(small, had[len(dense) :], strict=True):
        size = p.numel()
        values = flat[offset : offset + size].view_as(p)
        touched = flat[offset + size : offset + size + p.shape[0]].nonzero().squeeze(1)
        offset += size + p.shape[0]
        p.grad = (
            torch.sparse_coo_tensor(touched.unsqueeze(0), values[touched], p.shape, check_invariants=False)
            if any_rank
            else None
        )


def _gather_sparse(params: list[nn.Parameter], weight: float) -> None:
    """Two collectives for all sparse tables together: the per-rank row counts, then one buffer holding every
    table's (padded) row indices, reinterpreted bit for bit as the values' dtype, and row values."""
    world = world_size()
    device = params[0].device
    dtype = params[0].dtype
    assert all(p.dtype == dtype for p in params), "sparse tables of one dtype"
    pairs = []
    for p in params:
        if p.grad is None:
            pairs.append((torch.zeros(0, dtype=torch.int64, device=device), p.new_zeros((0, *p.shape[1:]))))
        else:
            g = p.grad.coalesce()
            pairs.append((g.indices()[0], g.values() * weight))
    counts = torch.tensor([len(idx) for idx, _ in pairs], dtype=torch.int64, device=device)
    all_counts = [torch.empty_like(counts) for _ in range(world)]
    dist.all_gather(all_counts, counts)
    most = torch.stack(all_counts).amax(0).tolist()
    chunks = []
    for (idx, values), m in zip(pairs, most, strict=True):
        padded_idx = idx.new_zeros(m)
        padded_idx[: len(idx)] = idx
        padded_values = values.new_zeros((m, *values.shape[1:]))
        padded_values[: len(values)] = values
        chunks += [padded_idx.view(dtype), padded_values.reshape(-1)]
    buffer = torch.cat(chunks)
    gathered = [torch.empty_like(buffer) for _ in range(world)]
    dist.all_gather(gathered, buffer)
    offset = 0
    for i, (p, m) in enumerate(zip(params, most, strict=True)):
        idx_len = m * torch.int64.itemsize // dtype.itemsize
        padded_len = idx_len + m * p[0].numel()
        if m == 0:
            p.grad = None  # no rank touched this table
            continue
        rows, vals = [], []
        for r, g in enumerate(gathered):
            c = int(all_counts[r][i])
            part = g[offset : offset + padded_len]
            rows.append(part[:idx_len].clone().view(torch.int64)[:c])  # a copy: an aligned start for the view
            vals.append(part[idx_len:].view(m, *p.shape[1:])[:c])
        offset += padded_len
        # Coalescing sums the duplicate rows: the sum over ranks of each touched row's gradient.
        p.grad = torch.sparse_coo_tensor(
            torch.cat(rows).unsqueeze(0), torch.cat(vals), p.shape, check_invariants=False
        ).coalesce()

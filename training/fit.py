"""Fitting: one plain minibatch loop shared by the three models, with early stopping on validation data."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Sequence[Tensor]], Tensor]


@dataclass
class FitResult:
    epochs: int  # epochs run (including the patience tail)
    best_epoch: int
    seconds: float
    train_loss: list[float] = field(default_factory=list)  # mean minibatch loss per epoch
    val_rmse: list[float] = field(default_factory=list)  # validation RMSE in stars per epoch


class Optimizers:
    """Several optimizers stepped as one, e.g. SparseAdam for embedding tables and Adam for the rest."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = optimizers

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.optimizers:
            o.step()


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


def fit(
    model: nn.Module,
    tensors: Sequence[Tensor],
    loss_fn: LossFn,
    validate: Callable[[], float],
    *,
    optimizer: torch.optim.Optimizer | Optimizers,
    batch_size: int,
    max_epochs: int,
    patience: int,
    generator: torch.Generator,
    desc: str = "fit",
) -> FitResult:
    """Minibatch training with early stopping; leaves `model` at its best validation epoch.

    Parameters
    ----------
    model : the network; `loss_fn(model, batch)` returns the mean loss of one minibatch.
    tensors : training tensors sharing their first dimension; each batch is the same rows of each.
    validate : returns validation RMSE in stars for the model as it is now (called in eval mode).
    generator : seeded; the only source of shuffling randomness.

    Returns
    -------
    FitResult with per-epoch curves.
    """
    n = len(tensors[0])
    result = FitResult(epochs=0, best_epoch=0, seconds=0.0)
    best_state = copy.deepcopy(model.state_dict())
    best = math.inf
    start = time.perf_counter()
    bar = tqdm(range(1, max_epochs + 1), desc=desc, unit="epoch", leave=False, disable=None)
    for epoch in bar:
        model.train()
        order = torch.randperm(n, generator=generator)
        shuffled = [t[order] for t in tensors]  # one gather per epoch; each batch is then a slice
        total = 0.0
        batches = 0
        for lo in range(0, n, batch_size):
            loss = loss_fn(model, [t[lo : lo + batch_size] for t in shuffled])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
        epoch_loss = total / batches
        if not math.isfinite(epoch_loss):
            raise DivergedError(f"{desc}: loss is {epoch_loss} at epoch {epoch}; lower the learning rate")
        model.eval()
        with torch.inference_mode():
            val = validate()
        if not math.isfinite(val):
            raise DivergedError(f"{desc}: validation RMSE is {val} at epoch {epoch}")
        result.train_loss.append(epoch_loss)
        result.val_rmse.append(val)
        result.epochs = epoch
        bar.set_postfix(loss=f"{epoch_loss:.4f}", val_rmse=f"{val:.4f}")
        if bar.disable:  # no bar off a terminal (a CI or docker log): one line per epoch, so progress shows
            log.info("%s: epoch %d/%d loss %.4f val RMSE %.4f", desc, epoch, max_epochs, epoch_loss, val)
        if val < best:
            best, result.best_epoch = val, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - result.best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - start
    log.info("%s: best val RMSE %.4f at epoch %d of %d", desc, best, result.best_epoch, result.epochs)
    return result

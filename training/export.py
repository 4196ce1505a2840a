"""Write a model store: TorchScript files, catalog, histories and the manifest that names them.

Atomic by construction: every file is written under a temporary name and renamed into place under a name that
carries its SHA-256 prefix, and `manifest.json` is replaced last. A crash at any point leaves either the old
manifest (whose files are all still there) or the new one (whose files were all written first). Files no
manifest names any more are removed only after the switch.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from app.artifacts import (
    MANIFEST_FILE,
    MODEL_NAMES,
    SCHEMA_VERSION,
    Catalog,
    DatasetInfo,
    FileRef,
    Item,
    Manifest,
    Metrics,
    ModelEntry,
)
from training.data import Interactions, MovieLens

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    name: str  # mf, dense or lstm
    network: nn.Module
    hyperparameters: dict[str, Any]
    metrics: list[Metrics]
    training_seconds: float
    epochs: int
    popularity_weight: float = 0.0  # ranking blend chosen on validation data (see training.ranking)
    world_size: int = 1  # processes that trained it data-parallel (training.distributed)


@contextmanager
def _torchscript_is_required() -> Iterator[None]:
    """TorchScript is the required artifact format: silence its deprecation warning here and only here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*TorchScript.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*", category=DeprecationWarning)
        yield


def script(network: nn.Module) -> torch.jit.ScriptModule:
    """`torch.jit.script` in eval mode."""
    network.eval()
    with _torchscript_is_required():
        return torch.jit.script(network)


def _save(module: torch.jit.ScriptModule, f: io.BufferedWriter) -> None:
    with _torchscript_is_required():
        torch.jit.save(module, f)


def _write_atomic(directory: Path, stem: str, suffix: str, write: Callable[[io.BufferedWriter], None]) -> FileRef:
    """Write to a temp file, fsync, hash, and rename to ``<stem>-<sha12><suffix>``."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the service may run as another user
        digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        name = f"{stem}-{digest[:12]}{suffix}"
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return FileRef(file=name, sha256=digest)


def catalog(data: MovieLens) -> Catalog:
    items = [
        Item(
            item_id=int(r.item_id),
            title=str(r.title),
            year=None if pd.isna(r.year) else int(r.year),
            genres=list(r.genres),
        )
        for r in data.items.itertuples()
    ]
    return Catalog(user_ids=[int(u) for u in data.user_raw_ids], items=items, genres=data.genres)


def histories(train: Interactions) -> dict[str, np.ndarray]:
    """Each user's training ratings in time order (CSR by user index) and each item's rating count."""
    indptr, order = train.user_histories()
    return {
        "indptr": indptr.astype(np.int64),
        "items": train.item_ids[order].astype(np.int64),
        "ratings": train.ratings[order].astype(np.float32),
        "timestamps": train.timestamps[order].astype(np.int64),
        "popularity": np.bincount(train.item_ids, minlength=train.num_items + 1).astype(np.int64),
    }


def export_store(
    out: Path, models: list[TrainedModel], *, data: MovieLens, train: Interactions, split: str
) -> Manifest:
    """Write every model, the catalog and the training histories into `out`, then switch the manifest.

    Parameters
    ----------
    out : the model store directory (created if missing; an existing store is replaced atomically).
    models : fitted networks with their metrics.
    data : the data set, for the catalog and its checksum.
    train : the interactions the models were trained on (the served users' histories).
    split : name of the training split, recorded in the manifest.

    Returns
    -------
    The manifest written.
    """
    out.mkdir(parents=True, exist_ok=True)
    cat_ref = _write_atomic(out, "catalog", ".json", lambda f: f.write(catalog(data).model_dump_json().encode()))
    hist = histories(train)
    hist_ref = _write_atomic(out, "histories", ".npz", lambda f: np.savez(f, **hist))  # type: ignore[arg-type]
    entries = {}
    now = datetime.now(UTC)
    for m in models:
        scripted = script(m.network)
        ref = _write_atomic(out, m.name, ".pt", lambda f, s=scripted: _save(s, f))  # type: ignore[misc]
        entries[m.name] = ModelEntry(
            file=ref.file,
            sha256=ref.sha256,
            name=m.name,  # type: ignore[arg-type]
            version=f"{m.name}-{ref.sha256[:12]}",
            trained_at=now,
            training_seconds=round(m.training_seconds, 3),
            epochs=m.epochs,
            torch_version=torch.__version__,
            hyperparameters=m.hyperparameters,
            metrics=m.metrics,
            n_parameters=sum(p.numel() for p in m.network.parameters()),
            popularity_weight=m.popularity_weight,
            world_size=m.world_size,
        )
    dataset = DatasetInfo(
        name="ml-100k",
        split=split,
        sha256=data.sha256,
        n_users=train.num_users,
        n_items=train.num_items,
        n_ratings=len(train),
    )
    merged = {**_carried_over(out, dataset, set(entries)), **entries}
    entries = {name: merged[name] for name in MODEL_NAMES if name in merged}
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        created_at=now,
        dataset=dataset,
        catalog=cat_ref,
        histories=hist_ref,
        models=entries,
    )
    text = json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".manifest-", suffix=".tmp")
    os.chmod(tmp, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / MANIFEST_FILE)
    _remove_unreferenced(out, manifest)
    log.info("wrote %s with %s", out / MANIFEST_FILE, ", ".join(entries))
    return manifest


# Only files this module writes are ever removed from a store directory.
_OWN_FILE = re.compile(r"^(?:(?:catalog|histories|mf|dense|lstm)-[0-9a-f]{12}\.(?:json|npz|pt)|\..+\.tmp)$")


def _remove_unreferenced(out: Path, manifest: Manifest) -> None:
    keep = {manifest.catalog.file, manifest.histories.file} | {e.file for e in manifest.models.values()}
    for path in out.iterdir():
        if path.is_file() and path.name not in keep and _OWN_FILE.match(path.name):
            path.unlink()


def _carried_over(out: Path, dataset: DatasetInfo, written: set[str]) -> dict[str, ModelEntry]:
    """Entries of the existing store's models that this export does not replace, when they were trained on
    the same data: retraining only mf must not drop dense and lstm."""
    try:
        old = Manifest.model_validate_json((out / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if old.dataset != dataset:
        return {}
    return {name: e for name, e in old.models.items() if name not in written and (out / e.file).is_file()}

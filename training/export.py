"""Write a model store: TorchScript files, catalog, histories and the manifests that name them.

Atomic by construction: every file is written under a temporary name and renamed into place under a name that
carries its SHA-256 prefix; the new version's manifest goes to ``versions/<id>.json`` and then replaces
`manifest.json`, the live pointer. A crash at any point leaves either the old live manifest (whose files are
all still there) or the new one (whose files were all written first).

Versions: an export keeps the last `keep` store versions (their manifests and every file they name), so a
service can roll back to one; only files no kept version names are removed, after the switch.

Concurrency: an export holds an exclusive ``flock`` on ``<store>/.lock`` from reading the current manifest to
its clean-up, so two exports into one store run one after the other and neither removes the other's files.
Readers (the service) take no lock: the files of the version they read stay until `keep` newer exports.

Models this export does not retrain are carried over from the live version, with the data they were trained
on recorded in their own entry (another split of the same data set is fine). A model is never dropped: if it
cannot be carried over (another data set or catalog, a missing file, an unreadable manifest), `ExportError`
stops the export before anything is written.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from app.artifacts import (
    DEFAULT_KEEP_VERSIONS,
    LOCK_FILE,
    MANIFEST_FILE,
    MODEL_NAMES,
    MODELS,
    MODULE_META_FILE,
    SCHEMA_VERSION,
    STORE_VERSION_PATTERN,
    VERSIONS_DIR,
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


class ExportError(Exception):
    """The store cannot take this export as asked; nothing of it was written."""


@dataclass
class TrainedModel:
    name: str  # mf, dense or lstm
    network: nn.Module
    hyperparameters: dict[str, Any]
    metrics: list[Metrics]
    training_seconds: float
    epochs: int
    rank_weight: float = 0.0  # weight of the rating score in the ranking score (see training.rank_heads)
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


def save_module(module: torch.jit.ScriptModule, f: io.BufferedWriter | io.BytesIO, *, name: str) -> None:
    """`torch.jit.save` with the archive naming the model it holds (the service checks it against the entry)."""
    with _torchscript_is_required():
        torch.jit.save(module, f, _extra_files={MODULE_META_FILE: json.dumps({"model": name})})


def _write_atomic(
    directory: Path, stem: str, suffix: str, write: Callable[[io.BufferedWriter], object], *, name: str | None = None
) -> FileRef:
    """Write to a temp file, fsync, hash, and rename to `name`, by default ``<stem>-<sha12><suffix>``."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the service may run as another user
        digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        name = name or f"{stem}-{digest[:12]}{suffix}"
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


def dataset_info(data: MovieLens, train: Interactions, split: str) -> DatasetInfo:
    """What the manifest records of the training data: `data`'s layout and checksum, `train`'s sizes and scale,
    and the name of its `split`."""
    return DatasetInfo(
        name=data.name,
        split=split,
        sha256=data.sha256,
        n_users=train.num_users,
        n_items=train.num_items,
        n_ratings=len(train),
        rating_min=train.rating_min,
        rating_max=train.rating_max,
    )


def export_store(
    out: Path,
    models: list[TrainedModel],
    *,
    catalog: Catalog,
    dataset: DatasetInfo,
    train: Interactions,
    keep: int = DEFAULT_KEEP_VERSIONS,
) -> Manifest:
    """Write every model, the catalog and the training histories into `out` as a new store version, make it
    the live one, and keep the last `keep` versions.

    Parameters
    ----------
    out : the model store directory (created if missing; an existing store gets a new version).
    models : fitted networks with their metrics; the store's other models are carried over.
    catalog : item metadata and id maps, written as the store's catalog (`catalog` of a `MovieLens`).
    dataset : the training data as the manifest and each new entry record it (`dataset_info`); its sizes must
        be `train`'s.
    train : the interactions the models were trained on, written as the served users' histories.
    keep : store versions to keep, this one included (at least 1).

    Returns
    -------
    The manifest written.

    Raises
    ------
    ExportError
        A model of the store that this export does not retrain cannot be kept (see `check_export`).
    """
    if keep < 1:
        raise ExportError(f"keep must be at least 1 store version, not {keep}")
    sizes = (train.num_users, train.num_items, len(train))
    if (dataset.n_users, dataset.n_items, dataset.n_ratings) != sizes:
        raise ValueError(
            f"export_store: dataset records {dataset.n_users} users, {dataset.n_items} items and "
            f"{dataset.n_ratings} ratings; the histories written have {sizes}"
        )
    out.mkdir(parents=True, exist_ok=True)
    scripted = {m.name: script(m.network) for m in models}  # the slow part, before taking the lock
    with store_lock(out):
        carried = _carried_over(out, dataset, catalog, {m.name for m in models})
        cat_ref = _write_atomic(out, "catalog", ".json", lambda f: f.write(catalog.model_dump_json().encode()))
        hist = histories(train)
        hist_ref = _write_atomic(out, "histories", ".npz", lambda f: np.savez(f, **hist))  # type: ignore[arg-type]
        entries = dict(carried)
        now = _after_every_kept_version(out, datetime.now(UTC))
        for m in models:
            module = scripted[m.name]
            ref = _write_atomic(out, m.name, ".pt", lambda f, s=module, n=m.name: save_module(s, f, name=n))  # type: ignore[misc]
            entries[m.name] = ModelEntry(
                file=ref.file,
                sha256=ref.sha256,
                name=m.name,  # type: ignore[arg-type]
                kind=MODELS[m.name].kind,  # type: ignore[index]
                sequence_length=MODELS[m.name].sequence_length,  # type: ignore[index]
                version=f"{m.name}-{ref.sha256[:12]}",
                trained_at=now,
                training_seconds=round(m.training_seconds, 3),
                epochs=m.epochs,
                torch_version=torch.__version__,
                hyperparameters=m.hyperparameters,
                metrics=m.metrics,
                n_parameters=sum(p.numel() for p in m.network.parameters()),
                rank_weight=m.rank_weight,
                dataset=dataset,
                world_size=m.world_size,
            )
        entries = {name: entries[name] for name in MODEL_NAMES if name in entries}
        content = hashlib.sha256(
            "".join(r.sha256 for r in (cat_ref, hist_ref, *entries.values())).encode() + dataset.split.encode()
        ).hexdigest()
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            store_version=f"{now:%Y%m%dT%H%M%S%f}Z-{content[:8]}",
            created_at=now,
            dataset=dataset,
            catalog=cat_ref,
            histories=hist_ref,
            models=entries,
        )
        text = (json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n").encode()
        versions = out / VERSIONS_DIR
        versions.mkdir(exist_ok=True)
        _write_atomic(versions, "manifest", ".json", lambda f: f.write(text), name=f"{manifest.store_version}.json")
        _write_atomic(out, "manifest", ".json", lambda f: f.write(text), name=MANIFEST_FILE)
        _prune(out, keep=keep, live=manifest)
    log.info("wrote %s (store version %s) with %s", out / MANIFEST_FILE, manifest.store_version, ", ".join(entries))
    return manifest


def _after_every_kept_version(out: Path, now: datetime) -> datetime:
    """`now`, or just after the newest kept version if the clock went back: ids must sort by creation."""
    ids = sorted(p.name for p in (out / VERSIONS_DIR).glob("*.json") if _VERSION_FILE.match(p.name))
    if ids:
        newest = datetime.strptime(ids[-1][:21], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)
        now = max(now, newest + timedelta(microseconds=1))
    return now


def check_export(out: Path, *, catalog: Catalog, dataset: DatasetInfo, models: tuple[str, ...] | list[str]) -> None:
    """Raise `ExportError` now if exporting `models` with `catalog` and `dataset` into `out` would have to drop
    one of its other models; the pipeline calls this before training, so a refusal costs no training time."""
    if not (out / MANIFEST_FILE).exists():
        return
    _carried_over(out, dataset, catalog, set(models))


@contextmanager
def store_lock(out: Path) -> Iterator[None]:
    """Hold the store's exclusive export lock (flock on `LOCK_FILE`), waiting for another export to finish."""
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another export to %s is running; waiting for it to finish", out)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _live_manifest(out: Path) -> Manifest | None:
    """The store's live manifest (None if there is none); a schema-1 store is read as one version."""
    path = out / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_bytes())
        if isinstance(raw, dict) and raw.get("schema_version") == 1:
            raw = _upgraded_from_schema_1(raw)
        return Manifest.model_validate(raw)
    except (OSError, ValueError, RecursionError) as e:
        raise ExportError(f"{path}: cannot read the store's manifest ({_first_line(e)})") from None


def _upgraded_from_schema_1(raw: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 manifest as schema 2: its entries were trained on the store's data set."""
    created = str(raw.get("created_at", "1970-01-01T00:00:00+00:00"))
    stamp = datetime.fromisoformat(created).astimezone(UTC)
    models = {name: {**entry, "dataset": raw.get("dataset")} for name, entry in dict(raw.get("models", {})).items()}
    return {
        **raw,
        "schema_version": SCHEMA_VERSION,
        "store_version": f"{stamp:%Y%m%dT%H%M%S%f}Z-00000000",
        "models": models,
    }


def _carried_over(out: Path, dataset: DatasetInfo, cat: Catalog, written: set[str]) -> dict[str, ModelEntry]:
    """The live version's entries for models this export does not retrain: retraining only mf must not drop
    dense and lstm. They keep their own `dataset` (their training split may differ from this export's); they
    must share the data set and catalog, or their id maps would not match the store's catalog."""
    needed = set(MODEL_NAMES) - written
    try:
        live = _live_manifest(out)
    except ExportError as e:
        if not needed:
            log.warning("%s; every model is retrained, so nothing is carried over", e)
            return {}
        raise ExportError(f"{e}: retrain every model (--models {','.join(MODEL_NAMES)}) or remove it") from None
    if live is None:
        return {}
    kept: dict[str, ModelEntry] = {name: e for name, e in live.models.items() if name not in written}
    if not kept:
        return {}
    names = ", ".join(kept)
    retrain_hint = f"retrain them too (--models {','.join(sorted(written | set(kept), key=MODEL_NAMES.index))})"
    same_data = (live.dataset.name, live.dataset.sha256) == (dataset.name, dataset.sha256)
    cat_sha = hashlib.sha256(cat.model_dump_json().encode()).hexdigest()
    if not same_data or live.catalog.sha256 != cat_sha:
        raise ExportError(
            f"{out} holds {names} trained on another data set or catalog (ratings SHA-256 "
            f"{live.dataset.sha256[:12]}…, this export's {dataset.sha256[:12]}…); {retrain_hint} or export into "
            "another directory"
        )
    missing = [e.file for e in kept.values() if not (out / e.file).is_file()]
    if missing:
        raise ExportError(f"{out}: the live manifest's {', '.join(missing)} are missing; {retrain_hint}")
    return kept


# Only files this module writes are ever removed from a store directory.
_OWN_FILE = re.compile(r"^(?:(?:catalog|histories|mf|dense|lstm)-[0-9a-f]{12}\.(?:json|npz|pt)|\..+\.tmp)$")
_VERSION_FILE = re.compile(STORE_VERSION_PATTERN.rstrip("$") + r"\.json$")


def _prune(out: Path, *, keep: int, live: Manifest) -> None:
    """Keep the newest `keep` versions and the live one; remove other versions' manifests, then every file of
    ours that no kept version names. Runs under the store lock, so no export is half-written meanwhile."""
    versions = out / VERSIONS_DIR
    ids = sorted(p.name[: -len(".json")] for p in versions.iterdir() if _VERSION_FILE.match(p.name))
    kept = set(ids[-keep:]) | {live.store_version}
    referenced = {MANIFEST_FILE}
    for version in ids:
        path = versions / f"{version}.json"
        if version not in kept:
            path.unlink()
            continue
        try:
            manifest = Manifest.model_validate_json(path.read_bytes())
        except (OSError, ValueError) as e:
            # Removing files on the word of a manifest we cannot read could delete a kept version's files.
            log.warning("%s is unreadable (%s); removing no files this time", path, _first_line(e))
            return
        referenced |= {manifest.catalog.file, manifest.histories.file} | {e.file for e in manifest.models.values()}
    for directory in (out, versions):
        for path in directory.iterdir():
            if path.is_file() and not path.is_symlink() and path.name not in referenced and _OWN_FILE.match(path.name):
                path.unlink()
    dropped = [v for v in ids if v not in kept]
    if dropped:
        log.info("removed store versions %s (keeping %d)", ", ".join(dropped), keep)


def activate(out: Path, version: str) -> Manifest:
    """Make the kept store `version` the live one: copy its manifest over `manifest.json` (atomically, under
    the export lock), after checking that every file it names is there with its checksum."""
    if not re.match(STORE_VERSION_PATTERN, version):
        raise ExportError(f"{version!r} is not a store version id")
    with store_lock(out):
        path = out / VERSIONS_DIR / f"{version}.json"
        try:
            text = path.read_bytes()
            manifest = Manifest.model_validate_json(text)
        except FileNotFoundError:
            kept = sorted(p.stem for p in (out / VERSIONS_DIR).glob("*.json"))
            raise ExportError(
                f"store version {version} is not kept in {out} (kept: {', '.join(kept) or 'none'})"
            ) from None
        except (OSError, ValueError) as e:
            raise ExportError(f"{path}: cannot read it ({_first_line(e)})") from None
        for ref in [manifest.catalog, manifest.histories, *manifest.models.values()]:
            file = out / ref.file
            if not file.is_file() or hashlib.sha256(file.read_bytes()).hexdigest() != ref.sha256:
                raise ExportError(f"{file}: missing or not the file store version {version} names")
        _write_atomic(out, "manifest", ".json", lambda f: f.write(text), name=MANIFEST_FILE)
    log.info("%s now serves store version %s", out / MANIFEST_FILE, version)
    return manifest


def main(argv: list[str] | None = None) -> int:
    """``python -m training.export activate --out DIR VERSION``: make a kept store version the live one."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m training.export", description=main.__doc__)
    commands = p.add_subparsers(dest="command", required=True)
    act = commands.add_parser("activate", help="point manifest.json at a kept store version (a lasting rollback)")
    act.add_argument("--out", type=Path, default=Path("models_store"), help="model store directory")
    act.add_argument("version", help="store version id, as GET /models lists them")
    commands.add_parser("list", help="list the kept store versions").add_argument(
        "--out", type=Path, default=Path("models_store"), help="model store directory"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "activate":
            activate(args.out, args.version)
            return 0
        live = _live_manifest(args.out)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in sorted((args.out / VERSIONS_DIR).glob("*.json"), reverse=True):
        marker = "*" if live is not None and path.stem == live.store_version else " "
        try:
            manifest = Manifest.model_validate_json(path.read_bytes())
            models = " ".join(e.version for e in manifest.models.values())
        except (OSError, ValueError) as e:
            models = f"(unreadable: {_first_line(e)})"
        print(f"{marker} {path.stem}  {models}")
    return 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


if __name__ == "__main__":
    sys.exit(main())

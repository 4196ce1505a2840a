"""Reading and verifying a model store's files: manifests (live and kept versions), catalog and histories.

Everything here returns validated data or raises `RegistryError` naming the file and the fault; nothing here
imports torch. `app.registry` builds the serving registry from what these functions return.

Trust: the manifest decides which files are read, so it is checked before any of them is opened: plain file
names, each model's version and file name derived from its SHA-256. Every file is opened without following a
symlink and without blocking (a FIFO would otherwise hang the reader forever), and must be a regular file; its
bytes are read once and checked against the manifest's SHA-256 before they are parsed.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from app.artifacts import (
    HISTORY_ARRAYS,
    MANIFEST_FILE,
    MODULE_META_FILE,
    SCHEMA_VERSION,
    STORE_VERSION_PATTERN,
    VERSIONS_DIR,
    Catalog,
    FileRef,
    Manifest,
    ModelEntry,
)
from app.errors import RegistryError

log = logging.getLogger(__name__)

# A manifest lists a few files; one this large is not a manifest, and is not read whole into memory.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_STORE_VERSION = re.compile(STORE_VERSION_PATTERN)


class MissingFileError(RegistryError):
    """A file the manifest names is not in the store (it may have been pruned by a newer export)."""


# --- files --------------------------------------------------------------------------------------------------


def read_regular_file(path: Path, *, limit: int | None = None) -> bytes:
    """The bytes of `path` if it is a regular file: symlinks are not followed, FIFOs and devices not read."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: missing") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RegistryError(f"{path}: is a symlink; a model store holds regular files only") from None
        raise RegistryError(f"{path}: cannot open it: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RegistryError(f"{path}: not a regular file; a model store holds regular files only")
        if limit is not None and info.st_size > limit:
            raise RegistryError(f"{path}: {info.st_size} bytes, more than the {limit} a manifest may have")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError as e:
        raise RegistryError(f"{path}: cannot read it: {e.strerror}") from None
    finally:
        os.close(fd)


def read_verified(directory: Path, ref: FileRef) -> bytes:
    """The bytes of `ref`, only if their SHA-256 is the one the manifest records."""
    _check_plain_name(directory, ref.file)
    path = directory / ref.file
    try:
        data = read_regular_file(path)
    except MissingFileError:
        raise MissingFileError(f"{path}: listed in {MANIFEST_FILE} but missing") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != ref.sha256:
        raise RegistryError(
            f"{path}: SHA-256 mismatch (manifest {ref.sha256[:12]}…, file {digest[:12]}…, "
            f"{len(data)} bytes); the file is corrupt, truncated or was replaced: re-export the store"
        )
    return data


def _check_plain_name(directory: Path, name: str) -> None:
    if Path(name).name != name or name in {"", ".", ".."}:
        raise RegistryError(f"{directory / MANIFEST_FILE}: file name {name!r} is not a plain file name")


# --- manifests ----------------------------------------------------------------------------------------------


def manifest_path(directory: Path, version: str | None = None) -> Path:
    """Where the live manifest (`version` None) or that of a kept store version is."""
    if version is None:
        return directory / MANIFEST_FILE
    if not _STORE_VERSION.match(version):
        raise RegistryError(f"{version!r} is not a store version id (like 20260101T120000000000Z-0123abcd)")
    return directory / VERSIONS_DIR / f"{version}.json"


def read_manifest(directory: Path, version: str | None = None) -> Manifest:
    """Parse and validate the live ``manifest.json`` or, given `version`, that kept version's manifest.

    Refuses any schema version but this service's, and entries whose version or file name is not derived
    from their checksum.
    """
    if not directory.is_dir():
        raise RegistryError(
            f"model store {directory} does not exist or is not a directory; train one with "
            f"`python -m training --out {directory}` or point RECSYS_MODELS_DIR at one"
        )
    path = manifest_path(directory, version)
    if version is not None and (directory / VERSIONS_DIR).is_symlink():
        raise RegistryError(f"{directory / VERSIONS_DIR}: is a symlink; a model store holds regular files only")
    try:
        data = read_regular_file(path, limit=MAX_MANIFEST_BYTES)
    except MissingFileError:
        if version is None:
            raise RegistryError(f"{path}: not found; {directory} is not a model store") from None
        kept = ", ".join(list_version_ids(directory)) or "none"
        raise RegistryError(f"store version {version} is not kept in {directory} (kept: {kept})") from None
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as e:
        # RecursionError: a deeply nested document is not a manifest, and must not escape as a crash.
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise RegistryError(f"{path}: cannot read it as JSON: {reason}") from None
    schema = raw.get("schema_version") if isinstance(raw, dict) else None
    if not isinstance(schema, int):
        raise RegistryError(f"{path}: no integer schema_version; not a model store manifest")
    if schema != SCHEMA_VERSION:
        hint = "upgrade the service" if schema > SCHEMA_VERSION else "re-export the store with current training"
        raise RegistryError(f"{path}: schema_version {schema}, but this service reads schema {SCHEMA_VERSION}; {hint}")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as e:
        raise RegistryError(f"{path}: does not match the manifest schema: {brief(e)}") from None
    except RecursionError:
        raise RegistryError(f"{path}: does not match the manifest schema: nested too deeply") from None
    if version is not None and manifest.store_version != version:
        raise RegistryError(f"{path}: records store version {manifest.store_version}, not {version}")
    if not manifest.models:
        raise RegistryError(f"{path}: names no models")
    for key, entry in manifest.models.items():
        _check_entry(path, key, entry)
    return manifest


def _check_entry(path: Path, key: str, entry: ModelEntry) -> None:
    """An entry's name, version and file name must agree with each other and with its checksum."""
    if entry.name != key:
        raise RegistryError(f"{path}: entry {key!r} is named {entry.name!r}")
    expected = f"{entry.name}-{entry.sha256[:12]}"
    if entry.version != expected or entry.file != f"{expected}.pt":
        raise RegistryError(
            f"{path}: entry {key!r} has version {entry.version!r} and file {entry.file!r}, but its SHA-256 "
            f"makes them {expected!r} and {expected + '.pt'!r}"
        )


def check_module_meta(path: Path, entry: ModelEntry, meta: str | bytes) -> None:
    """The model named inside the TorchScript archive must be the entry's (a dense entry cannot serve mf)."""
    try:
        named = json.loads(meta).get("model") if meta else None
    except (ValueError, AttributeError, RecursionError):
        named = None
    if named is None:
        raise RegistryError(
            f"{path}: carries no {MODULE_META_FILE} naming its model; re-export it with current training"
        )
    if named != entry.name:
        raise RegistryError(f"{path}: holds a {named!r} model, but {MANIFEST_FILE} lists it as {entry.name!r}")


# --- kept versions ------------------------------------------------------------------------------------------


def list_version_ids(directory: Path) -> list[str]:
    """Ids of the kept store versions, oldest first (ids sort by creation time)."""
    versions = directory / VERSIONS_DIR
    if versions.is_symlink() or not versions.is_dir():
        return []
    try:
        names = [p.name for p in versions.iterdir()]
    except OSError:
        return []
    return sorted(n[: -len(".json")] for n in names if n.endswith(".json") and _STORE_VERSION.match(n[:-5]))


@dataclass(frozen=True)
class StoreVersion:
    id: str
    manifest: Manifest | None  # None: kept but unreadable (the reason is in `problem`)
    problem: str | None = None


def list_versions(directory: Path) -> list[StoreVersion]:
    """Every kept store version, oldest first, each parsed (or with the reason it cannot be)."""
    found = []
    for version in list_version_ids(directory):
        try:
            found.append(StoreVersion(version, read_manifest(directory, version)))
        except RegistryError as e:
            found.append(StoreVersion(version, None, e.message))
    return found


def live_version_id(directory: Path) -> str | None:
    """The store version manifest.json holds now, or None if it cannot be read."""
    try:
        return read_manifest(directory).store_version
    except RegistryError:
        return None


def previous_version_id(directory: Path, current: str) -> str:
    """The newest kept version older than `current`: what a rollback returns to."""
    older = [v for v in list_version_ids(directory) if v < current]
    if not older:
        kept = ", ".join(list_version_ids(directory)) or "none"
        raise RegistryError(f"no store version older than {current} is kept in {directory} (kept: {kept})")
    return older[-1]


# --- catalog and histories ----------------------------------------------------------------------------------


def parse_catalog(directory: Path, manifest: Manifest) -> Catalog:
    """The verified catalog, checked against the manifest's counts and its own genre list."""
    path = directory / manifest.catalog.file
    data = read_verified(directory, manifest.catalog)
    try:
        catalog = Catalog.model_validate_json(data)
    except ValidationError as e:
        raise RegistryError(f"{path}: does not match the catalog schema: {brief(e)}") from None
    expected = (manifest.dataset.n_users, manifest.dataset.n_items)
    if (len(catalog.user_ids), len(catalog.items)) != expected:
        raise RegistryError(
            f"{path}: {len(catalog.user_ids)} users and {len(catalog.items)} items, but {MANIFEST_FILE} "
            f"says {expected[0]} and {expected[1]}"
        )
    for kind, ids in (("user", catalog.user_ids), ("item", [i.item_id for i in catalog.items])):
        if len(set(ids)) != len(ids):
            raise RegistryError(f"{path}: duplicate {kind} ids")
    known = {g.lower() for g in catalog.genres}
    stray = sorted({g for item in catalog.items for g in item.genres if g.lower() not in known})
    if stray:
        raise RegistryError(f"{path}: items use genres missing from its genre list: {', '.join(stray)}")
    return catalog


def parse_histories(directory: Path, manifest: Manifest) -> dict[str, np.ndarray]:
    """The verified per-user histories (CSR) and item popularity, plain arrays only."""
    path = directory / manifest.histories.file
    data = read_verified(directory, manifest.histories)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError) as e:
        raise RegistryError(f"{path}: not a readable .npz of plain arrays: {e}") from None
    missing = [name for name in HISTORY_ARRAYS if name not in arrays]
    if missing:
        raise RegistryError(f"{path}: missing arrays {', '.join(missing)}")
    odd = [name for name in HISTORY_ARRAYS if arrays[name].dtype.kind not in "iuf" or arrays[name].ndim != 1]
    if odd:
        raise RegistryError(f"{path}: arrays {', '.join(odd)} must be one-dimensional and numeric")
    n_users, n_items = manifest.dataset.n_users, manifest.dataset.n_items
    indptr, items, ratings, popularity, timestamps = (arrays[name] for name in HISTORY_ARRAYS)
    problems = []
    if indptr.shape != (n_users + 2,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        problems.append(f"indptr must be {n_users + 2} non-decreasing offsets from 0")
    elif indptr[-1] != len(items) or len(ratings) != len(items) or len(timestamps) != len(items):
        problems.append("indptr, items, ratings and timestamps disagree in length")
    if len(items) and (items.min() < 1 or items.max() > n_items):
        problems.append(f"item indices outside 1..{n_items}")
    if popularity.shape != (n_items + 1,) or (len(popularity) and popularity.min() < 0):
        problems.append(f"popularity must be {n_items + 1} non-negative counts")
    if not np.isfinite(ratings).all():
        problems.append("ratings must be finite")
    if problems:
        raise RegistryError(f"{path}: {'; '.join(problems)}")
    return {
        "indptr": indptr.astype(np.int64),
        "items": items.astype(np.int64),
        "ratings": ratings.astype(np.float32),
        "popularity": popularity.astype(np.int64),
        "timestamps": timestamps.astype(np.int64),
    }


def brief(error: ValidationError) -> str:
    """The first three issues of a validation error, one line."""
    issues: list[Any] = error.errors()
    shown = "; ".join(f"{'.'.join(map(str, i['loc'])) or '(root)'}: {i['msg']}" for i in issues[:3])
    return shown + (f" (and {len(issues) - 3} more)" if len(issues) > 3 else "")

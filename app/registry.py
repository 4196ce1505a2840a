"""The loaded model store: verified TorchScript modules and everything serving precomputes from the artifacts.

`ModelRegistry.load(directory)` either returns a registry whose every model is loaded, checked and warmed, or
raises `RegistryError` naming the file and what is wrong with it. Nothing is half-loaded: a registry object
exists only once it is complete, and `RegistryHolder` swaps the app's registry as one reference.

Trust: every file's bytes are read once, checked against the manifest's SHA-256, and only those verified bytes
are parsed or handed to ``torch.jit.load`` (from memory, so a file replaced after the check is never read).
Histories are plain arrays loaded with ``allow_pickle=False``.

Hot reload: `RegistryHolder.reload` builds a complete new registry in a worker thread (off the event loop),
then swaps it in; requests already running keep the registry they started with, and a failed load leaves the
current one serving.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread
import numpy as np
import torch
from pydantic import ValidationError

from app.artifacts import (
    MANIFEST_FILE,
    SCHEMA_VERSION,
    SEQUENCE_LENGTH,
    Catalog,
    FileRef,
    Item,
    Manifest,
    ModelEntry,
    ModelName,
)
from app.errors import (
    NotReadyError,
    RegistryError,
    UnknownGenreError,
    UnknownItemError,
    UnknownModelError,
    UnknownUserError,
)
from app.retrieval import SHORTLIST_FROM, ModelRetrieval, RankSpace, RetrievalConfig, VectorIndex

log = logging.getLogger(__name__)

ModelKind = Literal["pair", "sequence"]
# mf and dense score (user, item) pairs; the LSTM scores items after a sequence of earlier ones.
MODEL_KINDS: dict[str, ModelKind] = {"mf": "pair", "dense": "pair", "lstm": "sequence"}
REQUIRED_METHODS: dict[ModelKind, tuple[str, ...]] = {
    "pair": ("predict", "score_all", "item_embeddings"),
    "sequence": ("predict", "score_all", "score_next", "item_embeddings"),
}
# The ranking contract's inner-product form (mf, lstm): kept through freezing where a module has it, and
# required where a ranking space is built from it.
RANK_METHODS = ("rank_all", "rank_item_vectors", "rank_user_vector", "rank_session_vector", "rank_next")
HISTORY_ARRAYS = ("indptr", "items", "ratings", "popularity")
# The LSTM's context when scoring the next item: the last SEQUENCE_LENGTH - 1 known items (score_next appends
# the position being predicted).
CONTEXT_LENGTH = SEQUENCE_LENGTH - 1
WARMUP_CALLS = 3  # TorchScript's profiling executor optimises a method after its first two calls


@dataclass(frozen=True, eq=False)
class LoadedModel:
    name: ModelName
    kind: ModelKind
    entry: ModelEntry
    module: torch.jit.ScriptModule
    unit_embeddings: np.ndarray  # [n_items + 1, d] float32, rows L2-normalised, row 0 (padding) all zero
    rank_bonus: np.ndarray  # [n_items + 1] float32: popularity_weight * popularity prior, added to stars

    @property
    def version(self) -> str:
        return self.entry.version


class IdIndex:
    """Raw ids -> model indices 1..n in the order given (0 is padding and answers any unknown id). A dict:
    a request looks up one user and a few items, where numpy's per-call overhead would dominate."""

    def __init__(self, raw_ids: Iterable[int]) -> None:
        self._index = {raw: index for index, raw in enumerate(raw_ids, start=1)}

    def index(self, raw_id: int) -> int:
        return self._index.get(raw_id, 0)

    def indices(self, raw_ids: list[int]) -> np.ndarray:
        get = self._index.get
        return np.array([get(i, 0) for i in raw_ids], dtype=np.int64)


class ModelRegistry:
    """Everything one model store serves from, precomputed at load time; read-only afterwards."""

    def __init__(
        self,
        *,
        directory: Path,
        manifest: Manifest,
        catalog: Catalog,
        histories: dict[str, np.ndarray],
        models: dict[str, LoadedModel],
        load_seconds: float,
        retrieval: dict[str, ModelRetrieval] | None = None,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self.catalog = catalog
        self.models = models
        # Approximate retrieval per model; empty below the catalog-size threshold (every request exact).
        self.retrieval = retrieval or {}
        self.load_seconds = load_seconds
        self.loaded_at = time.time()
        self.n_users = len(catalog.user_ids)
        self.n_items = len(catalog.items)
        self.genres = list(catalog.genres)
        self._genre_index = {g.lower(): i for i, g in enumerate(self.genres)}

        self._users = IdIndex(catalog.user_ids)
        self._items = IdIndex(item.item_id for item in catalog.items)
        # item_raw[k] is the raw id of item index k; index 0 is padding (raw id 0 is never looked up).
        self.item_raw = np.r_[0, [item.item_id for item in catalog.items]].astype(np.int64)

        self.genre_matrix = np.zeros((self.n_items + 1, len(self.genres)), dtype=bool)
        for index, item in enumerate(catalog.items, start=1):
            self.genre_matrix[index, [self._genre_index[g.lower()] for g in item.genres]] = True

        self.indptr = histories["indptr"]
        self.history_items = histories["items"]
        self.history_ratings = histories["ratings"].astype(np.float32)
        self.popularity = histories["popularity"]
        # Every real item; candidate masks start from a copy of this.
        self.all_items = np.ones(self.n_items + 1, dtype=bool)
        self.all_items[0] = False

    # --- loading ------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path, retrieval: RetrievalConfig | None = None) -> ModelRegistry:
        """Read, verify, load and warm every artifact of the store in `directory`, and build the retrieval
        indexes from the verified models if `retrieval` applies to its catalog size.

        Raises
        ------
        RegistryError
            The store is missing, unreadable, of another schema version, fails a checksum, or a model does
            not load or answer its warm-up calls; the message names the file.
        """
        start = time.perf_counter()
        directory = Path(directory)
        manifest = read_manifest(directory)
        catalog = _parse_catalog(directory, manifest)
        histories = _parse_histories(directory, manifest)
        prior = popularity_prior(histories["popularity"])
        if not manifest.models:
            raise RegistryError(f"{directory / MANIFEST_FILE}: names no models")
        models: dict[str, LoadedModel] = {}
        for key, entry in manifest.models.items():
            if entry.name != key:
                raise RegistryError(f"{directory / MANIFEST_FILE}: entry {key!r} is named {entry.name!r}")
            models[key] = _load_model(directory, entry, manifest, prior)
        indexes = _build_retrieval(directory, models, manifest.dataset.n_items, retrieval)
        seconds = time.perf_counter() - start
        log.info(
            "loaded model store %s (split %s, schema %d): %s in %.2f s",
            directory,
            manifest.dataset.split,
            manifest.schema_version,
            ", ".join(m.version for m in models.values()),
            seconds,
        )
        return cls(
            directory=directory,
            manifest=manifest,
            catalog=catalog,
            histories=histories,
            models=models,
            load_seconds=seconds,
            retrieval=indexes,
        )

    # --- lookups (raise domain errors) ---------------------------------------------------------------------

    def model(self, name: str, kind: ModelKind | None = None) -> LoadedModel:
        """The loaded model `name`, optionally required to be of `kind`."""
        found = self.models.get(name)
        if found is None or (kind is not None and found.kind != kind):
            available = [n for n, m in self.models.items() if kind is None or m.kind == kind]
            raise UnknownModelError(name, available)
        return found

    def user_index(self, user_id: int) -> int:
        index = self._users.index(user_id)
        if index == 0:
            raise UnknownUserError([user_id])
        return index

    def has_user(self, user_id: int) -> bool:
        return self._users.index(user_id) != 0

    def item_indices(self, item_ids: list[int]) -> np.ndarray:
        """Model indices of raw `item_ids`, in order; `UnknownItemError` names every unknown id."""
        index = self._items.indices(item_ids)
        if not index.all():
            unknown = [i for i, k in zip(item_ids, index.tolist(), strict=True) if k == 0]
            raise UnknownItemError(list(dict.fromkeys(unknown)))
        return index

    def item(self, index: int) -> Item:
        return self.catalog.items[index - 1]

    def genre_mask(self, genres: list[str]) -> np.ndarray:
        """Items having any of `genres` (case-insensitive), as a boolean mask over indices."""
        unknown = [g for g in genres if g.lower() not in self._genre_index]
        if unknown:
            raise UnknownGenreError(unknown, self.genres)
        columns = [self._genre_index[g.lower()] for g in genres]
        return np.asarray(self.genre_matrix[:, columns].any(axis=1))

    def history(self, user_index: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's training items and ratings, oldest first."""
        lo, hi = self.indptr[user_index], self.indptr[user_index + 1]
        return self.history_items[lo:hi], self.history_ratings[lo:hi]


def popularity_prior(popularity: np.ndarray) -> np.ndarray:
    """log1p(count) / log1p(max count), in [0, 1]; all zero for an empty history."""
    top = float(np.log1p(popularity.max())) if len(popularity) else 0.0
    if top == 0.0:
        return np.zeros(len(popularity), dtype=np.float32)
    prior: np.ndarray = (np.log1p(popularity) / top).astype(np.float32)
    return prior


# --- reading and verifying artifacts ------------------------------------------------------------------------


def read_manifest(directory: Path) -> Manifest:
    """Parse and validate ``manifest.json``, refusing any schema version but this service's."""
    path = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise RegistryError(
            f"model store {directory} does not exist or is not a directory; train one with "
            f"`python -m training --out {directory}` or point RECSYS_MODELS_DIR at one"
        )
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise RegistryError(f"{path}: not found; {directory} is not a model store") from None
    except (OSError, ValueError) as e:
        raise RegistryError(f"{path}: cannot read it as JSON: {e}") from None
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if not isinstance(version, int):
        raise RegistryError(f"{path}: no integer schema_version; not a model store manifest")
    if version != SCHEMA_VERSION:
        hint = "upgrade the service" if version > SCHEMA_VERSION else "re-export the store with current training"
        raise RegistryError(f"{path}: schema_version {version}, but this service reads schema {SCHEMA_VERSION}; {hint}")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        raise RegistryError(f"{path}: does not match the manifest schema: {_brief(e)}") from None


def read_verified(directory: Path, ref: FileRef) -> bytes:
    """The bytes of `ref`, only if their SHA-256 is the one the manifest records."""
    if Path(ref.file).name != ref.file or ref.file in {"", ".", ".."}:
        raise RegistryError(f"{directory / MANIFEST_FILE}: file name {ref.file!r} is not a plain file name")
    path = directory / ref.file
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RegistryError(f"{path}: listed in {MANIFEST_FILE} but missing") from None
    except OSError as e:
        raise RegistryError(f"{path}: cannot read it: {e}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != ref.sha256:
        raise RegistryError(
            f"{path}: SHA-256 mismatch (manifest {ref.sha256[:12]}…, file {digest[:12]}…, "
            f"{len(data)} bytes); the file is corrupt, truncated or was replaced: re-export the store"
        )
    return data


def _parse_catalog(directory: Path, manifest: Manifest) -> Catalog:
    path = directory / manifest.catalog.file
    data = read_verified(directory, manifest.catalog)
    try:
        catalog = Catalog.model_validate_json(data)
    except ValidationError as e:
        raise RegistryError(f"{path}: does not match the catalog schema: {_brief(e)}") from None
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


def _parse_histories(directory: Path, manifest: Manifest) -> dict[str, np.ndarray]:
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
    n_users, n_items = manifest.dataset.n_users, manifest.dataset.n_items
    indptr, items, ratings, popularity = (arrays[name] for name in HISTORY_ARRAYS)
    problems = []
    if indptr.shape != (n_users + 2,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        problems.append(f"indptr must be {n_users + 2} non-decreasing offsets from 0")
    elif indptr[-1] != len(items) or len(ratings) != len(items):
        problems.append("indptr, items and ratings disagree in length")
    if len(items) and (items.min() < 1 or items.max() > n_items):
        problems.append(f"item indices outside 1..{n_items}")
    if popularity.shape != (n_items + 1,) or (len(popularity) and popularity.min() < 0):
        problems.append(f"popularity must be {n_items + 1} non-negative counts")
    if problems:
        raise RegistryError(f"{path}: {'; '.join(problems)}")
    return {
        "indptr": indptr.astype(np.int64),
        "items": items.astype(np.int64),
        "ratings": ratings.astype(np.float32),
        "popularity": popularity.astype(np.int64),
    }


def _load_model(directory: Path, entry: ModelEntry, manifest: Manifest, prior: np.ndarray) -> LoadedModel:
    path = directory / entry.file
    data = read_verified(directory, entry)
    kind = MODEL_KINDS[entry.name]
    started = time.perf_counter()
    with warnings.catch_warnings():
        # TorchScript is the artifact format the contract fixes; its deprecation notices are not news here.
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*", category=DeprecationWarning)
        try:
            module = torch.jit.load(io.BytesIO(data), map_location="cpu")  # type: ignore[no-untyped-call]
        except Exception as e:  # torch raises RuntimeError and others for a corrupt archive
            raise RegistryError(f"{path}: torch.jit.load failed: {_first_line(e)}") from None
        module.eval()
        missing = [m for m in REQUIRED_METHODS[kind] if not hasattr(module, m)]
        if missing:
            raise RegistryError(f"{path}: a {entry.name} module must export {', '.join(missing)}")
        try:
            # Weights become constants and what depends only on them is computed once, here: e.g. the dense
            # net's item half of its first layer (its score_all drops from ~240 to ~150 us).
            preserved = [*REQUIRED_METHODS[kind], *(m for m in RANK_METHODS if hasattr(module, m))]
            module = torch.jit.freeze(module, preserved_attrs=preserved)
        except Exception as e:
            raise RegistryError(f"{path}: torch.jit.freeze failed: {_first_line(e)}") from None
    try:
        embeddings = _warm_up(module, kind, manifest.dataset.n_users, manifest.dataset.n_items)
    except Exception as e:
        raise RegistryError(f"{path}: warm-up call failed: {_first_line(e)}") from None
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = np.divide(embeddings, norms, out=np.zeros_like(embeddings), where=norms > 0)
    unit[0] = 0.0
    log.info("%s: loaded and warmed in %.0f ms", entry.version, (time.perf_counter() - started) * 1000)
    return LoadedModel(
        name=entry.name,
        kind=kind,
        entry=entry,
        module=module,
        unit_embeddings=np.ascontiguousarray(unit, dtype=np.float32),
        rank_bonus=(entry.popularity_weight * prior).astype(np.float32),
    )


def _warm_up(module: torch.jit.ScriptModule, kind: ModelKind, n_users: int, n_items: int) -> np.ndarray:
    """Call every serving method with real shapes (first and last indices, so a model built for another
    catalog fails here), check what comes back, and return the item embeddings."""
    n_out = n_items + 1
    with torch.inference_mode():
        for _ in range(WARMUP_CALLS):
            if kind == "pair":
                users = torch.tensor([1, n_users, 1], dtype=torch.int64)
                items = torch.tensor([1, n_items, n_items], dtype=torch.int64)
                _check_stars("predict", module.predict(users, items), (3,))
                _check_stars("score_all", module.score_all(users[:1]), (n_out,))
            else:
                items = torch.zeros((1, SEQUENCE_LENGTH), dtype=torch.int64)
                items[0, -3:] = torch.tensor([1, n_items, 1])
                ratings = torch.zeros((1, SEQUENCE_LENGTH), dtype=torch.float32)
                ratings[0, -3:-1] = torch.tensor([4.0, 2.0])
                _check_stars("predict", module.predict(items, ratings), (1, SEQUENCE_LENGTH))
                context = (items[:, 1:], ratings[:, 1:])
                _check_stars("score_next", module.score_next(*context), (n_out,))
                users = torch.tensor([1, n_users], dtype=torch.int64)
                _check_stars("score_all", module.score_all(users[:1]), (n_out,))
                _check_stars("score_all", module.score_all(users[1:]), (n_out,))
        embeddings = module.item_embeddings().detach().to(torch.float32)
    if embeddings.dim() != 2 or embeddings.shape[0] != n_out:
        raise ValueError(f"item_embeddings() has shape {tuple(embeddings.shape)}, expected ({n_out}, d)")
    if not torch.isfinite(embeddings).all():
        raise ValueError("item_embeddings() contains NaN or infinity")
    result: np.ndarray = embeddings.numpy().copy()
    return result


def _build_retrieval(
    directory: Path, models: dict[str, LoadedModel], n_items: int, config: RetrievalConfig | None
) -> dict[str, ModelRetrieval]:
    """Indexes over the verified, loaded models (nothing read from disk): a ranking space per model, from its
    own rank vectors or, for dense, mf's, with the model's popularity blend as the item term, and a cosine
    index over its unit embeddings."""
    if config is None or n_items < config.min_items:
        return {}
    started = time.perf_counter()
    result: dict[str, ModelRetrieval] = {}
    for name, loaded in models.items():
        source = models.get(SHORTLIST_FROM[name])
        space = None
        if source is not None:
            needed = ("rank_item_vectors", "rank_user_vector") + (
                ("rank_session_vector",) if source.kind == "sequence" else ()
            )
            missing = [m for m in needed if not hasattr(source.module, m)]
            if missing:
                raise RegistryError(
                    f"{directory / source.entry.file}: approximate retrieval needs {', '.join(missing)}"
                )
            with torch.inference_mode():
                vectors = source.module.rank_item_vectors().to(torch.float32).numpy()
            if vectors.shape[0] != n_items + 1 or not np.isfinite(vectors).all():
                raise RegistryError(f"{directory / source.entry.file}: rank_item_vectors() is not finite [n+1, d]")
            space = RankSpace.build(source.name, vectors, loaded.rank_bonus, config.dims_per_code)
        else:
            log.warning("%s: no %s model to shortlist from; its recommendations stay exact", name, SHORTLIST_FROM[name])
        result[name] = ModelRetrieval(
            config=config,
            space=space,
            rerank=source is not loaded,
            similar=VectorIndex(loaded.unit_embeddings, config.dims_per_code),
        )
    log.info("built retrieval indexes for %d items in %.2f s", n_items, time.perf_counter() - started)
    return result


def _check_stars(method: str, out: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(out.shape) != shape:
        raise ValueError(f"{method}() returned shape {tuple(out.shape)}, expected {shape}")
    if not torch.isfinite(out).all() or out.min() < 1.0 or out.max() > 5.0:
        raise ValueError(f"{method}() returned values outside [1, 5] stars")


def _brief(error: ValidationError) -> str:
    issues = error.errors()
    shown = "; ".join(f"{'.'.join(map(str, i['loc'])) or '(root)'}: {i['msg']}" for i in issues[:3])
    return shown + (f" (and {len(issues) - 3} more)" if len(issues) > 3 else "")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


class RegistryHolder:
    """The app's current registry, swapped as one reference so a request never sees a half-built one.

    A request reads ``holder.get()`` once and uses that registry throughout, so a swap (hot reload) while it
    runs does not affect it: it finishes on the models it started with, which live until it drops them.
    """

    def __init__(self, retrieval: RetrievalConfig | None = None) -> None:
        self._registry: ModelRegistry | None = None
        self.retrieval = retrieval  # how every registry this holder loads retrieves
        self.reason = "the model store has not been loaded yet"
        # Serialises reloads: two at once would load the store twice and could swap in the older result last.
        self._reload_lock = anyio.Lock()

    @property
    def registry(self) -> ModelRegistry | None:
        return self._registry

    def get(self) -> ModelRegistry:
        registry = self._registry
        if registry is None:
            raise NotReadyError(self.reason)
        return registry

    def set(self, registry: ModelRegistry) -> None:
        self._registry = registry

    def clear(self, reason: str) -> None:
        self._registry = None
        self.reason = reason

    async def reload(self, directory: Path) -> tuple[ModelRegistry | None, ModelRegistry]:
        """Load, verify and warm the store in `directory` in a worker thread, then swap it in.

        Reloads run one at a time; one that arrives during another waits for it, then loads again (the store
        may have changed since the first one read it). Returns the previous and the new registry.

        Raises
        ------
        RegistryError
            The store cannot be loaded; the current registry stays installed and keeps serving.
        """
        async with self._reload_lock:
            # The event loop keeps serving requests with the current registry while this thread loads.
            registry = await anyio.to_thread.run_sync(ModelRegistry.load, directory, self.retrieval)
            previous, self._registry = self._registry, registry
            return previous, registry

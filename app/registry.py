"""The loaded model store: verified TorchScript modules and everything serving precomputes from the artifacts.

`ModelRegistry.load(directory)` either returns a registry whose every model is loaded, checked and warmed, or
raises `RegistryError` naming the file and what is wrong with it. Nothing is half-loaded: a registry object
exists only once it is complete, and `RegistryHolder` swaps the app's registry as one reference.

Trust: files are read and verified by `app.store` (regular files inside the store only, every byte checked
against the manifest's SHA-256); only those verified bytes are parsed or handed to ``torch.jit.load`` (from
memory, so a file replaced after the check is never read). Histories are plain arrays loaded with
``allow_pickle=False``. A module must name the entry's model inside its archive, and every parameter and buffer
(each user's and item's row) must be finite.

Hot reload: `RegistryHolder.reload` builds a complete new registry in a worker thread (off the event loop),
then swaps it in; requests already running keep the registry they started with, and a failed load leaves the
current one serving.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread
import numpy as np
import torch

from app import store
from app.artifacts import (
    MODULE_META_FILE,
    SEQUENCE_LENGTH,
    Catalog,
    DatasetInfo,
    Item,
    Manifest,
    ModelEntry,
    ModelName,
)
from app.errors import (
    InvalidRequestError,
    NotReadyError,
    RegistryError,
    UnknownGenreError,
    UnknownItemError,
    UnknownModelError,
    UnknownUserError,
)
from app.foldin import LinearView, build_view
from app.retrieval import SHORTLIST_FROM, ModelRetrieval, RankSpace, RetrievalConfig, VectorIndex

log = logging.getLogger(__name__)

ModelKind = Literal["pair", "sequence"]
# mf and dense score (user, item) pairs; the LSTM scores items after a sequence of earlier ones.
MODEL_KINDS: dict[str, ModelKind] = {"mf": "pair", "dense": "pair", "lstm": "sequence"}
# What each model must export (app/artifacts.py): rating methods, the ranking score, and for mf and lstm the
# inner-product form of that score (maximum-inner-product search needs it; warm-up checks it agrees).
REQUIRED_METHODS: dict[ModelName, tuple[str, ...]] = {
    "mf": ("predict", "score_all", "item_embeddings", "rank_all", "rank_item_vectors", "rank_user_vector"),
    "dense": ("predict", "score_all", "item_embeddings", "rank_all"),
    "lstm": (
        "predict",
        "score_all",
        "score_next",
        "item_embeddings",
        "rank_all",
        "rank_next",
        "rank_item_vectors",
        "rank_user_vector",
        "rank_session_vector",
    ),
}
# The LSTM's context when scoring the next item: the last SEQUENCE_LENGTH - 1 known items (score_next appends
# the position being predicted).
CONTEXT_LENGTH = SEQUENCE_LENGTH - 1
WARMUP_CALLS = 3  # TorchScript's profiling executor optimises a method after its first two calls
LIVE_LOAD_ATTEMPTS = 3  # loads of the live manifest when exports keep replacing it meanwhile


@dataclass(frozen=True, eq=False)
class LoadedModel:
    name: ModelName
    kind: ModelKind
    entry: ModelEntry
    module: torch.jit.ScriptModule
    unit_embeddings: np.ndarray  # [n_items + 1, d] float32, rows L2-normalised, row 0 (padding) all zero

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
        self.store_version = manifest.store_version
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
        # Linear views of each model's known users (app.foldin): batch scoring and new users from a few ratings.
        self.views: dict[str, LinearView] = {
            name: build_view(
                m.module,
                name,
                n_users=self.n_users,
                indptr=self.indptr,
                history_items=self.history_items,
                history_ratings=self.history_ratings,
                scale=(manifest.dataset.rating_min, manifest.dataset.rating_max),
            )
            for name, m in models.items()
        }

    # --- loading ------------------------------------------------------------------------------------------

    @classmethod
    def load(
        cls, directory: Path, version: str | None = None, retrieval: RetrievalConfig | None = None
    ) -> ModelRegistry:
        """Read, verify, load and warm every artifact of the store in `directory` (its live manifest, or the
        kept store `version`), and build the retrieval indexes from the verified models if `retrieval`
        applies to its catalog size.

        Raises
        ------
        RegistryError
            The store is missing, unreadable, of another schema version, fails a checksum, or a model does
            not load or answer its warm-up calls; the message names the file.
        """
        start = time.perf_counter()
        directory = Path(directory)
        for attempt in range(LIVE_LOAD_ATTEMPTS):
            manifest = store.read_manifest(directory, version)
            try:
                return cls._load(directory, manifest, start, retrieval)
            except store.MissingFileError:
                # An export that finished while this one read the live manifest may have pruned the files it
                # names (with --keep-versions 1): load the manifest that replaced it instead.
                if version is not None or attempt + 1 == LIVE_LOAD_ATTEMPTS:
                    raise
                if store.live_version_id(directory) == manifest.store_version:
                    raise
                log.info("the live store version changed while loading %s; loading the new one", directory)
        raise AssertionError("unreachable")

    @classmethod
    def _load(
        cls, directory: Path, manifest: Manifest, start: float, retrieval: RetrievalConfig | None
    ) -> ModelRegistry:
        catalog = store.parse_catalog(directory, manifest)
        histories = store.parse_histories(directory, manifest)
        models: dict[str, LoadedModel] = {
            key: _load_model(directory, entry, manifest) for key, entry in manifest.models.items()
        }
        indexes = _build_retrieval(directory, models, manifest.dataset.n_items, retrieval)
        seconds = time.perf_counter() - start
        log.info(
            "loaded model store %s (version %s, split %s, schema %d): %s in %.2f s",
            directory,
            manifest.store_version,
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

    def check_ratings(self, ratings: list[float]) -> None:
        """Raise `InvalidRequestError` unless every given rating is on the store's scale (its manifest's)."""
        lo, hi = self.manifest.dataset.rating_min, self.manifest.dataset.rating_max
        outside = [r for r in ratings if not lo <= r <= hi]
        if outside:
            raise InvalidRequestError(
                f"ratings {', '.join(f'{r:g}' for r in outside)} outside this store's scale {lo:g}-{hi:g}",
                rating_min=lo,
                rating_max=hi,
            )

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


def _load_model(directory: Path, entry: ModelEntry, manifest: Manifest) -> LoadedModel:
    path = directory / entry.file
    data = store.read_verified(directory, entry)
    kind = MODEL_KINDS[entry.name]
    started = time.perf_counter()
    with warnings.catch_warnings():
        # TorchScript is the artifact format the contract fixes; its deprecation notices are not news here.
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*", category=DeprecationWarning)
        try:
            meta = {MODULE_META_FILE: ""}
            module = torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=meta)  # type: ignore[no-untyped-call]
        except Exception as e:  # torch raises RuntimeError and others for a corrupt archive
            raise RegistryError(f"{path}: torch.jit.load failed: {_first_line(e)}") from None
        module.eval()
        missing = [m for m in REQUIRED_METHODS[entry.name] if not hasattr(module, m)]
        if missing:
            raise RegistryError(f"{path}: a {entry.name} module must export {', '.join(missing)}")
        store.check_module_meta(path, entry, meta[MODULE_META_FILE])
        _check_finite_tables(path, module)
        try:
            # Weights become constants and what depends only on them is computed once, here: e.g. the dense
            # net's item half of its first layer (its score_all drops from ~240 to ~150 us).
            module = torch.jit.freeze(module, preserved_attrs=list(REQUIRED_METHODS[entry.name]))
        except Exception as e:
            raise RegistryError(f"{path}: torch.jit.freeze failed: {_first_line(e)}") from None
    try:
        embeddings = _warm_up(module, entry.name, manifest.dataset)
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
    )


def _warm_up(module: torch.jit.ScriptModule, name: ModelName, dataset: DatasetInfo) -> np.ndarray:
    """Call every serving method with real shapes (first and last indices, so a model built for another
    catalog fails here), check what comes back (within the manifest's rating scale), and return the item
    embeddings."""
    n_users, n_items = dataset.n_users, dataset.n_items
    scale = (dataset.rating_min, dataset.rating_max)
    n_out = n_items + 1
    users = torch.tensor([1, n_users], dtype=torch.int64)
    with torch.inference_mode():
        for _ in range(WARMUP_CALLS):
            for user in (users[:1], users[1:]):
                _check_scores("rank_all", module.rank_all(user), (n_out,))
            if name != "dense":
                vectors = module.rank_item_vectors()
                _check_scores("rank_item_vectors", vectors, (n_out, vectors.shape[-1]))
                for user in (users[:1], users[1:]):
                    query = module.rank_user_vector(user)
                    _check_inner_product("rank_user_vector", vectors, query, module.rank_all(user))
            if MODEL_KINDS[name] == "pair":
                pairs = torch.tensor([1, n_users, 1], dtype=torch.int64)
                items = torch.tensor([1, n_items, n_items], dtype=torch.int64)
                _check_stars("predict", module.predict(pairs, items), (3,), scale)
                _check_stars("score_all", module.score_all(pairs[:1]), (n_out,), scale)
            else:
                items = torch.zeros((1, SEQUENCE_LENGTH), dtype=torch.int64)
                items[0, -3:] = torch.tensor([1, n_items, 1])
                ratings = torch.zeros((1, SEQUENCE_LENGTH), dtype=torch.float32)
                ratings[0, -3:-1] = torch.tensor([scale[1], scale[0]])
                _check_stars("predict", module.predict(items, ratings), (1, SEQUENCE_LENGTH), scale)
                context = (items[:, 1:], ratings[:, 1:])
                _check_stars("score_next", module.score_next(*context), (n_out,), scale)
                _check_scores("rank_next", module.rank_next(*context), (n_out,))
                query = module.rank_session_vector(*context)
                _check_inner_product("rank_session_vector", vectors, query, module.rank_next(*context))
                _check_stars("score_all", module.score_all(users[:1]), (n_out,), scale)
                _check_stars("score_all", module.score_all(users[1:]), (n_out,), scale)
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
    own rank vectors or, for dense, mf's, and a cosine
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
            # The item biases are a column of the vectors already: no item-only term.
            space = RankSpace.build(source.name, vectors, np.zeros(n_items + 1, np.float32), config.dims_per_code)
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


def _check_finite_tables(path: Path, module: torch.jit.ScriptModule) -> None:
    """Every parameter and buffer finite: a NaN in one user's or item's row would pass a warm-up on other
    rows and then serve null ratings (and empty pages) to that user or for that item."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    bad = [name for name, t in tensors if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise RegistryError(f"{path}: {', '.join(bad)} contain NaN or infinity")


def _check_scores(method: str, out: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(out.shape) != shape:
        raise ValueError(f"{method}() returned shape {tuple(out.shape)}, expected {shape}")
    if not torch.isfinite(out).all():
        raise ValueError(f"{method}() returned NaN or infinity")


def _check_inner_product(method: str, vectors: torch.Tensor, query: torch.Tensor, scores: torch.Tensor) -> None:
    """The contract of mf and lstm: the ranking score is item vectors @ query, so an ANN index may serve it."""
    _check_scores(method, query, (vectors.shape[-1],))
    if not torch.allclose(vectors @ query, scores, rtol=1e-4, atol=1e-4):
        raise ValueError(f"rank_item_vectors() @ {method}() differs from the ranking score")


def _check_stars(method: str, out: torch.Tensor, shape: tuple[int, ...], scale: tuple[float, float]) -> None:
    if tuple(out.shape) != shape:
        raise ValueError(f"{method}() returned shape {tuple(out.shape)}, expected {shape}")
    lo, hi = scale
    if not torch.isfinite(out).all() or out.min() < lo or out.max() > hi:
        raise ValueError(f"{method}() returned values outside [{lo:g}, {hi:g}] stars (the manifest's rating scale)")


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

    async def reload(
        self,
        directory: Path,
        *,
        version: str | None = None,
        accept: Callable[[ModelRegistry | None, ModelRegistry], None] | None = None,
    ) -> tuple[ModelRegistry | None, ModelRegistry]:
        """Load, verify and warm the store in `directory` (its live manifest, or the kept store `version`) in a
        worker thread, then swap it in, unless `accept(current, new)` raises.

        Reloads run one at a time; one that arrives during another waits for it, then loads again (the store
        may have changed since the first one read it). Returns the previous and the new registry.

        Raises
        ------
        RegistryError
            The store cannot be loaded; the current registry stays installed and keeps serving.
        """
        async with self._reload_lock:
            # The event loop keeps serving requests with the current registry while this thread loads.
            registry = await anyio.to_thread.run_sync(ModelRegistry.load, directory, version, self.retrieval)
            if accept is not None:
                accept(self._registry, registry)  # under the lock: it judges the registry it would replace
            previous, self._registry = self._registry, registry
            return previous, registry

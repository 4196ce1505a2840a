"""The loaded model store: verified TorchScript modules and everything serving precomputes from the artifacts.

`ModelRegistry.load(directory)` either returns a registry whose every model is loaded, checked and warmed, or
raises `RegistryError` naming the file and what is wrong with it. Nothing is half-loaded: a registry object
exists only once it is complete, and `RegistryHolder` swaps the app's registry as one reference.

Where each step lives: `app.store` reads and verifies the files (regular files inside the store only, every
byte checked against the manifest's SHA-256; histories are plain arrays loaded with ``allow_pickle=False``);
`app.handlers` turns each model's verified bytes into a serving handler of the entry's kind (``torch.jit.load``
from memory, so a file replaced after the check is never read; the module must name the entry's model inside
its archive, every parameter and buffer must be finite; frozen and warmed up); `app.foldin` and
`app.retrieval` precompute from the handlers. This module puts them together and answers the lookups.

Hot reload: `RegistryHolder.reload` builds a complete new registry in a worker thread (off the event loop),
then swaps it in; requests already running keep the registry they started with, and a failed load leaves the
current one serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np

from app import store
from app.artifacts import Catalog, Item, Manifest, ModelKind
from app.errors import (
    InvalidRequestError,
    NotReadyError,
    UnknownGenreError,
    UnknownItemError,
    UnknownModelError,
    UnknownUserError,
)
from app.foldin import LinearView, build_view
from app.handlers import ModelHandler, SequenceHandler, handler_for
from app.retrieval import ModelRetrieval, RetrievalConfig, build_retrieval

log = logging.getLogger(__name__)

LIVE_LOAD_ATTEMPTS = 3  # loads of the live manifest when exports keep replacing it meanwhile


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
        models: dict[str, ModelHandler],
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
                m,
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
        models: dict[str, ModelHandler] = {
            key: handler_for(entry).initialize(directory, entry, manifest.dataset)
            for key, entry in manifest.models.items()
        }
        indexes = build_retrieval(directory, models, manifest.dataset.n_items, retrieval)
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

    def model(self, name: str, kind: ModelKind | None = None) -> ModelHandler:
        """The handler of the loaded model `name`, optionally required to be of `kind`."""
        found = self.models.get(name)
        if found is None or (kind is not None and found.kind != kind):
            available = [n for n, m in self.models.items() if kind is None or m.kind == kind]
            raise UnknownModelError(name, available)
        return found

    def sequence_model(self, name: str) -> SequenceHandler:
        """The handler of the loaded sequence model `name`; `UnknownModelError` names the loaded ones."""
        found = self.model(name, kind="sequence")
        assert isinstance(found, SequenceHandler)  # the sequence kind's handler
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

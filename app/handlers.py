"""Serving handlers: one per model kind, and the only code that calls a TorchScript module.

A handler follows TorchServe's rhythm. `ModelHandler.initialize` loads the verified bytes of one artifact,
checks it exports what its kind and model must (`app.artifacts.MODELS`), freezes it and warms it up with real
shapes; after that every method is preprocess (numpy indices -> int64/float32 tensors), inference (one batched
module call under ``torch.inference_mode()``) and postprocess (``.numpy()``), so the services work in numpy
only. What differs by kind lives in the two subclasses: how a pair model and a sequence model predict a known
user's stars (`predict_pairs`), and the sequence model's anonymous-session methods.

The kind is the manifest entry's (``ModelEntry.kind``), and a sequence model's window its
``sequence_length``: `handler_for` picks the class from the entry, never from the model's name.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from app import store
from app.artifacts import (
    MODELS,
    MODULE_META_FILE,
    SEQUENCE_LENGTH,
    DatasetInfo,
    ModelContract,
    ModelEntry,
    ModelKind,
    context_length,
    latest_context,
    left_pad,
)
from app.errors import RegistryError

log = logging.getLogger(__name__)

WARMUP_CALLS = 3  # TorchScript's profiling executor optimises a method after its first two calls
# The ranking score's inner-product form (app/artifacts.py): what maximum-inner-product search needs.
RANK_VECTOR_METHODS = ("rank_item_vectors", "rank_user_vector")


class ModelHandler:
    """One loaded, frozen and warmed model; read-only, safe to share across request threads."""

    kind: ClassVar[ModelKind]
    # What every module of this kind exports (app/artifacts.py); the model's contract may add the rank vectors.
    methods: ClassVar[tuple[str, ...]] = ("predict", "score_all", "item_embeddings", "rank_all")

    def __init__(self, entry: ModelEntry, module: torch.jit.ScriptModule, unit_embeddings: np.ndarray) -> None:
        self.entry = entry
        self.name = entry.name
        self.contract: ModelContract = MODELS[entry.name]
        self.module = module
        # [n_items + 1, d] float32, rows L2-normalised, row 0 (padding) all zero: similarity and explanations.
        self.unit_embeddings = unit_embeddings

    @property
    def version(self) -> str:
        return self.entry.version

    @classmethod
    def required_methods(cls, entry: ModelEntry) -> tuple[str, ...]:
        extra = RANK_VECTOR_METHODS if MODELS[entry.name].rank_vectors else ()
        return tuple(dict.fromkeys(cls.methods + extra))

    # --- initialize -------------------------------------------------------------------------------------------

    @classmethod
    def initialize(cls, directory: Path, entry: ModelEntry, dataset: DatasetInfo) -> ModelHandler:
        """Load the entry's verified artifact from `directory`, check, freeze and warm it.

        Raises
        ------
        RegistryError
            Naming the file: a corrupt archive, a missing method, another model's archive, non-finite weights,
            or a warm-up call that fails or answers outside the manifest's shapes and rating scale.
        """
        path = directory / entry.file
        data = store.read_verified(directory, entry)
        started = time.perf_counter()
        methods = cls.required_methods(entry)
        with warnings.catch_warnings():
            # TorchScript is the artifact format the contract fixes; its deprecation notices are not news here.
            warnings.filterwarnings("ignore", message=r".*torch\.jit.*", category=DeprecationWarning)
            try:
                meta = {MODULE_META_FILE: ""}
                module = torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=meta)  # type: ignore[no-untyped-call]
            except Exception as e:  # torch raises RuntimeError and others for a corrupt archive
                raise RegistryError(f"{path}: torch.jit.load failed: {_first_line(e)}") from None
            module.eval()
            missing = [m for m in methods if not hasattr(module, m)]
            if missing:
                raise RegistryError(f"{path}: a {entry.name} module must export {', '.join(missing)}")
            store.check_module_meta(path, entry, meta[MODULE_META_FILE])
            _check_finite_tables(path, module)
            try:
                # Weights become constants and what depends only on them is computed once, here: e.g. the dense
                # net's item half of its first layer (its score_all drops from ~240 to ~150 us).
                module = torch.jit.freeze(module, preserved_attrs=list(methods))
            except Exception as e:
                raise RegistryError(f"{path}: torch.jit.freeze failed: {_first_line(e)}") from None
        handler = cls(entry, module, np.zeros((0, 0), dtype=np.float32))
        try:
            embeddings = handler._warm_up(dataset)
        except Exception as e:
            raise RegistryError(f"{path}: warm-up call failed: {_first_line(e)}") from None
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        unit = np.divide(embeddings, norms, out=np.zeros_like(embeddings), where=norms > 0)
        unit[0] = 0.0
        handler.unit_embeddings = np.ascontiguousarray(unit, dtype=np.float32)
        log.info("%s: loaded and warmed in %.0f ms", entry.version, (time.perf_counter() - started) * 1000)
        return handler

    def _warm_up(self, dataset: DatasetInfo) -> np.ndarray:
        """Call every serving method with real shapes (first and last indices, so a model built for another
        catalog fails here), check what comes back (within the manifest's rating scale), and return the item
        embeddings."""
        module = self.module
        n_users, n_out = dataset.n_users, dataset.n_items + 1
        users = torch.tensor([1, n_users], dtype=torch.int64)
        with torch.inference_mode():
            for _ in range(WARMUP_CALLS):
                for user in (users[:1], users[1:]):
                    _check_scores("rank_all", module.rank_all(user), (n_out,))
                    _check_stars("score_all", module.score_all(user), (n_out,), dataset)
                if self.contract.rank_vectors:
                    vectors = module.rank_item_vectors()
                    _check_scores("rank_item_vectors", vectors, (n_out, vectors.shape[-1]))
                    for user in (users[:1], users[1:]):
                        query = module.rank_user_vector(user)
                        _check_inner_product("rank_user_vector", vectors, query, module.rank_all(user))
                self._warm_up_kind(dataset)
            embeddings = module.item_embeddings().detach().to(torch.float32)
        if embeddings.dim() != 2 or embeddings.shape[0] != n_out:
            raise ValueError(f"item_embeddings() has shape {tuple(embeddings.shape)}, expected ({n_out}, d)")
        if not torch.isfinite(embeddings).all():
            raise ValueError("item_embeddings() contains NaN or infinity")
        result: np.ndarray = embeddings.numpy().copy()
        return result

    def _warm_up_kind(self, dataset: DatasetInfo) -> None:
        raise NotImplementedError

    # --- a known user ---------------------------------------------------------------------------------------

    def rank_user(self, user: int) -> np.ndarray:
        """The ranking score ``[n_items + 1]`` of every item for the known user index `user`."""
        with torch.inference_mode():
            scores: np.ndarray = self.module.rank_all(_user(user)).numpy()
        return scores

    def stars_user(self, user: int) -> np.ndarray:
        """Predicted stars ``[n_items + 1]`` of every item for the known user index `user`."""
        with torch.inference_mode():
            stars: np.ndarray = self.module.score_all(_user(user)).numpy()
        return stars

    def score_user(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """(ranking scores, predicted stars), each ``[n_items + 1]``, of the known user index `user`."""
        with torch.inference_mode():
            index = _user(user)
            scores, stars = self.module.rank_all(index), self.module.score_all(index)
        return scores.numpy(), stars.numpy()

    def rank_users(self, users: np.ndarray) -> np.ndarray:
        """`rank_user` of each index in `users`, ``[len(users), n_items + 1]`` float32 (one call per user: the
        contract's rank_all takes one)."""
        with torch.inference_mode():
            rows = [self.module.rank_all(_user(u)) for u in users.tolist()]
        return _stacked(rows, self.unit_embeddings.shape[0])

    def stars_users(self, users: np.ndarray) -> np.ndarray:
        """`stars_user` of each index in `users`, ``[len(users), n_items + 1]`` float32."""
        with torch.inference_mode():
            rows = [self.module.score_all(_user(u)) for u in users.tolist()]
        return _stacked(rows, self.unit_embeddings.shape[0])

    def predict_pairs(self, user: int, items: np.ndarray) -> np.ndarray:
        """Predicted stars of the known user index `user` for each item index of `items`, in one call."""
        raise NotImplementedError

    def user_vector(self, user: int) -> np.ndarray:
        """The user's ranking query vector (``rank_user_vector``; models whose contract has rank vectors)."""
        with torch.inference_mode():
            vector: np.ndarray = self.module.rank_user_vector(_user(user)).numpy()
        return vector

    def item_vectors(self) -> np.ndarray:
        """``rank_item_vectors()`` ``[n_items + 1, D]`` float32 (models whose contract has rank vectors)."""
        with torch.inference_mode():
            vectors: np.ndarray = self.module.rank_item_vectors().to(torch.float32).numpy()
        return vectors

    def item_embeddings(self) -> np.ndarray:
        """``item_embeddings()`` ``[n_items + 1, d]`` float64, for the linear views (app.foldin)."""
        with torch.inference_mode():
            embeddings: np.ndarray = self.module.item_embeddings().detach().to(torch.float64).numpy()
        return embeddings


class PairHandler(ModelHandler):
    """mf and dense: ``predict(users, items)`` scores (user, item) pairs."""

    kind = "pair"

    def _warm_up_kind(self, dataset: DatasetInfo) -> None:
        users = torch.tensor([1, dataset.n_users, 1], dtype=torch.int64)
        items = torch.tensor([1, dataset.n_items, dataset.n_items], dtype=torch.int64)
        _check_stars("predict", self.module.predict(users, items), (3,), dataset)

    def predict_pairs(self, user: int, items: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.module.predict(torch.full((len(items),), user, dtype=torch.int64), torch.from_numpy(items))
        stars: np.ndarray = out.numpy()
        return stars


class SequenceHandler(ModelHandler):
    """The LSTM: items in time order; a known user is scored from the state after their whole history."""

    kind = "sequence"
    methods = (
        *ModelHandler.methods,
        "score_next",
        "rank_next",
        *RANK_VECTOR_METHODS,
        "rank_session_vector",
    )

    def __init__(self, entry: ModelEntry, module: torch.jit.ScriptModule, unit_embeddings: np.ndarray) -> None:
        super().__init__(entry, module, unit_embeddings)
        assert entry.sequence_length is not None  # ModelEntry requires it of a sequence model
        self.sequence_length = entry.sequence_length

    @classmethod
    def initialize(cls, directory: Path, entry: ModelEntry, dataset: DatasetInfo) -> ModelHandler:
        if entry.sequence_length is not None and entry.sequence_length < SEQUENCE_LENGTH:
            # /predict/lstm takes up to SEQUENCE_LENGTH items, each predicted from the ones before it.
            raise RegistryError(
                f"{directory / entry.file}: sequence_length {entry.sequence_length} is shorter than the "
                f"{SEQUENCE_LENGTH} items this service's requests may hold"
            )
        return super().initialize(directory, entry, dataset)

    def _warm_up_kind(self, dataset: DatasetInfo) -> None:
        module, length = self.module, self.sequence_length
        items = torch.zeros((1, length), dtype=torch.int64)
        items[0, -3:] = torch.tensor([1, dataset.n_items, 1])
        ratings = torch.zeros((1, length), dtype=torch.float32)
        ratings[0, -3:-1] = torch.tensor([dataset.rating_max, dataset.rating_min])
        _check_stars("predict", module.predict(items, ratings), (1, length), dataset)
        n_out = dataset.n_items + 1
        context = (items[:, 1:], ratings[:, 1:])
        _check_stars("score_next", module.score_next(*context), (n_out,), dataset)
        _check_scores("rank_next", module.rank_next(*context), (n_out,))
        vectors = module.rank_item_vectors()
        query = module.rank_session_vector(*context)
        _check_inner_product("rank_session_vector", vectors, query, module.rank_next(*context))

    @property
    def context_length(self) -> int:
        """How many of a session's latest items are the model's context."""
        return context_length(self.sequence_length)

    def predict_pairs(self, user: int, items: np.ndarray) -> np.ndarray:
        # After the user's whole training history (the state /recommend/{user}?model=lstm ranks from): the
        # rating head has no per-item form for that state, so one product over the catalog.
        stars: np.ndarray = self.stars_user(user)[items]
        return stars

    def predict_sequence(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """Stars of each item of a sequence (oldest first, at most `sequence_length`) from the items and ratings
        before it; the leading ``len(ratings)`` items have known ratings, the rest are unknown (0)."""
        padded_items, padded_ratings = left_pad(items, ratings, self.sequence_length)
        with torch.inference_mode():
            out = self.module.predict(torch.from_numpy(padded_items[None]), torch.from_numpy(padded_ratings[None]))
        stars: np.ndarray = out[0, self.sequence_length - len(items) :].numpy()
        return stars

    def score_session(self, items: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ranking scores, predicted stars) ``[n_items + 1]`` of every item as the next one after a session."""
        context = self._context(items, ratings)
        with torch.inference_mode():
            scores, stars = self.module.rank_next(*context), self.module.score_next(*context)
        return scores.numpy(), stars.numpy()

    def session_vector(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """The ranking query vector of a session (``rank_session_vector``)."""
        with torch.inference_mode():
            vector: np.ndarray = self.module.rank_session_vector(*self._context(items, ratings)).numpy()
        return vector

    def predict_next(self, items: np.ndarray, ratings: np.ndarray, page: np.ndarray) -> np.ndarray:
        """Stars of each item index of `page` as the next one after the session: `predict` on context + item,
        one row per item, equal to ``score_next(context)[page]`` without scoring the whole catalog."""
        context_items, context_ratings = self._context(items, ratings)
        n = len(page)
        with torch.inference_mode():
            out = self.module.predict(
                torch.cat([context_items.expand(n, -1), torch.from_numpy(page)[:, None]], dim=1),
                torch.cat([context_ratings.expand(n, -1), torch.zeros(n, 1)], dim=1),
            )
        stars: np.ndarray = out[:, -1].numpy()
        return stars

    def _context(self, items: np.ndarray, ratings: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        context_items, context_ratings = latest_context(items, ratings, self.sequence_length)
        return torch.from_numpy(context_items[None]), torch.from_numpy(context_ratings[None])


HANDLERS: dict[ModelKind, type[ModelHandler]] = {"pair": PairHandler, "sequence": SequenceHandler}


def handler_for(entry: ModelEntry) -> type[ModelHandler]:
    """The handler class of the entry's kind."""
    return HANDLERS[entry.kind]


def _user(user: int) -> torch.Tensor:
    return torch.tensor([user], dtype=torch.int64)


def _stacked(rows: list[torch.Tensor], width: int) -> np.ndarray:
    if not rows:
        return np.zeros((0, width), dtype=np.float32)
    stacked: np.ndarray = torch.stack(rows).to(torch.float32).numpy()
    return stacked


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


def _check_stars(method: str, out: torch.Tensor, shape: tuple[int, ...], dataset: DatasetInfo) -> None:
    if tuple(out.shape) != shape:
        raise ValueError(f"{method}() returned shape {tuple(out.shape)}, expected {shape}")
    lo, hi = dataset.rating_min, dataset.rating_max
    if not torch.isfinite(out).all() or out.min() < lo or out.max() > hi:
        raise ValueError(f"{method}() returned values outside [{lo:g}, {hi:g}] stars (the manifest's rating scale)")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"

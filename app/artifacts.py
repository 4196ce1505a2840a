"""The model-store contract: what `training` writes and the service reads.

Owned by the reading side (the app); training imports it to write exactly this shape. Nothing here imports
torch or training code, so the service stays lean and the contract is readable on its own.

Layout of a model store directory (every file but the manifest is named ``<stem>-<first 12 hex of its
SHA-256>.<ext>``, so a new store's files never overwrite the old one's, and the manifest, replaced last and
atomically, decides which set is live)::

    manifest.json             Manifest below: dataset, catalog files, one ModelEntry per model, all with SHA-256;
                              the live version, a byte-for-byte copy of one of versions/<store_version>.json
    versions/<id>.json        the manifest of each kept store version (the last few exports), so a service can
                              roll back; the files they name are kept with them
    .lock                     flock(2)ed by an export for its whole run, so exports never interleave
    catalog-<sha12>.json      Catalog below: item metadata and id maps
    histories-<sha12>.npz     per-user training history in time order (CSR) and item popularity: the arrays
                              of `HISTORY_ARRAYS`, plain numpy arrays, loaded with allow_pickle=False
    <model>-<sha12>.pt        TorchScript, one per model (`MODELS`: mf, dense, lstm)

Every file is read as a regular file inside the store directory: a symlink, FIFO or device is refused, never
followed or opened for reading. A model's ``version`` and file name are derived from its SHA-256
(``<name>-<sha12>``, ``<name>-<sha12>.pt``), and the TorchScript archive carries `MODULE_META_FILE` naming the
model it holds, so an entry cannot point at another model's weights unnoticed.

Each model entry records its ``kind`` (pair or sequence, fixed per model by `MODELS`) and, for a sequence
model, the ``sequence_length`` it was trained on: the reader builds its serving handler from them.

Indices: users and items are indexed 1..n in the models (0 is the padding / unknown row). The catalog
maps raw ids to those indices. Every TorchScript module's rating methods return stars clamped to the data set's
scale, ``[dataset.rating_min, dataset.rating_max]`` (1-5 for ML-100K/1M, 0.5-5 in half stars for ML-10M and
later, a ratings file's own range otherwise):

- mf, dense: ``predict(users: Tensor[B] int64, items: Tensor[B] int64) -> Tensor[B]``;
  ``score_all(user: Tensor[1] int64) -> Tensor[n_items + 1]`` (index 0 is padding, ignore it);
  ``item_embeddings() -> Tensor[n_items + 1, d]``.
- lstm (kind sequence; L is the entry's ``sequence_length``):
  ``predict(items: Tensor[B, L] int64, ratings: Tensor[B, L] float32) -> Tensor[B, L]`` where items are oldest
  first, left-padded with 0 (`left_pad`), and ``ratings`` are the known stars of those items (0 = unknown).
  The value at position k depends only on items <= k and ratings < k.
  ``score_next(items: Tensor[1, L], ratings: Tensor[1, L]) -> Tensor[n_items + 1]`` scores every item as the
  next one after the context (an anonymous sequence, from the LSTM's zero state; the context is the latest
  L - 1 items, `latest_context`, since the position being predicted is appended); ``score_all(user)`` as
  above, from the state after the user's whole training history.
  ``item_embeddings()`` as above.

Ranking (schema 3; schemas 1-2 ranked by stars plus a popularity blend). Each module also carries a ranking score,
learned from implicit feedback (which films a user watches: a softmax over the catalog) plus ``rank_weight`` times
the [0,1]-scale rating score (see `training.rank_heads`). Higher is better; it is not in stars and its scale means
nothing across users. `/recommend` orders candidates by it:

- every model: ``rank_all(user: Tensor[1] int64) -> Tensor[n_items + 1]`` (index 0 is padding, ignore it), from
  the user's whole training history.
- lstm also: ``rank_next(items: Tensor[1, L], ratings: Tensor[1, L]) -> Tensor[n_items + 1]`` for an anonymous
  sequence, taking what ``score_next`` takes.
- mf and lstm: the score is an inner product, so it can be served by maximum-inner-product search:
  ``rank_item_vectors() -> Tensor[n_items + 1, D]`` and ``rank_user_vector(user: Tensor[1]) -> Tensor[D]`` (lstm
  also ``rank_session_vector(items, ratings) -> Tensor[D]``), with ``rank_all(user) == rank_item_vectors() @
  rank_user_vector(user)`` and ``rank_next`` likewise. Item biases are folded in as the last column, whose
  query entry is a constant 1. Row 0 of the item vectors is padding.

The ranking score's item biases include ``p * popularity_prior(popularity)`` (p is the entry's
``hyperparameters["rank_popularity_weight"]``, the counts those of the store's histories), chosen on validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

# 2: store versions (Manifest.store_version, versions/) and each entry's own training data (ModelEntry.dataset).
# 3: ranking heads (rank_* methods); ModelEntry.rank_weight replaces popularity_weight.
# 4: ModelEntry.kind and ModelEntry.sequence_length; histories.npz must hold every array of HISTORY_ARRAYS.
SCHEMA_VERSION = 4
MANIFEST_FILE = "manifest.json"
VERSIONS_DIR = "versions"
LOCK_FILE = ".lock"
# How many store versions an export keeps by default (the live one and the ones a rollback can return to).
DEFAULT_KEEP_VERSIONS = 3
# A JSON file inside each TorchScript archive (torch.jit.save's _extra_files): {"model": "<name>"}.
MODULE_META_FILE = "recsys.json"
# Store version ids sort by creation time: UTC time to the microsecond, then 8 hex of the manifest's content.
STORE_VERSION_PATTERN = r"^[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}$"
ModelName = Literal["mf", "dense", "lstm"]
# pair: scores (user, item) pairs; sequence: scores items after a sequence of earlier rated items.
ModelKind = Literal["pair", "sequence"]
# The window the LSTM is trained on (training) and the longest sequence /predict/lstm takes (the service).
SEQUENCE_LENGTH = 10
# The arrays of histories.npz: CSR by user index (indptr [n_users + 2], then the items and ratings of every
# user's training ratings in time order), each item's training rating count [n_items + 1], and the ratings'
# timestamps (alongside items; kept for readers that need time, the service does not).
HISTORY_ARRAYS = ("indptr", "items", "ratings", "popularity", "timestamps")


@dataclass(frozen=True)
class ModelContract:
    """What the contract fixes for one model: what training declares and the service relies on."""

    kind: ModelKind
    sequence_length: int | None  # the window it is trained on (sequence models); None for pair models
    rank_vectors: bool  # exports rank_item_vectors/rank_user_vector: the ranking score is an inner product
    linear: bool  # its stars are exactly linear in [item_embeddings(), 1] per user (app.foldin)
    shortlist_from: ModelName  # whose ranking vectors shortlist its candidates on a large catalog (app.retrieval)


MODELS: dict[ModelName, ModelContract] = {
    "mf": ModelContract(kind="pair", sequence_length=None, rank_vectors=True, linear=True, shortlist_from="mf"),
    # An MLP over both embeddings: no inner-product form, so mf's ranking space shortlists for it.
    "dense": ModelContract(kind="pair", sequence_length=None, rank_vectors=False, linear=False, shortlist_from="mf"),
    "lstm": ModelContract(
        kind="sequence", sequence_length=SEQUENCE_LENGTH, rank_vectors=True, linear=True, shortlist_from="lstm"
    ),
}
MODEL_NAMES: tuple[ModelName, ...] = tuple(MODELS)  # in export order


def models_of_kind(kind: ModelKind) -> list[ModelName]:
    return [name for name, contract in MODELS.items() if contract.kind == kind]


# --- numpy helpers both sides use ---------------------------------------------------------------------------


def left_pad(items: np.ndarray, ratings: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The last `length` items and their ratings, left-padded with item 0 and rating 0, as int64 and float32;
    ``ratings`` may be shorter than ``items`` (the known ratings of the leading items): the rest are 0, unknown."""
    padded_items = np.zeros(length, dtype=np.int64)
    padded_ratings = np.zeros(length, dtype=np.float32)
    full = np.zeros(len(items), dtype=np.float32)
    full[: len(ratings)] = ratings
    n = min(len(items), length)
    if n:
        padded_items[length - n :] = items[len(items) - n :]
        padded_ratings[length - n :] = full[len(items) - n :]
    return padded_items, padded_ratings


def context_length(sequence_length: int) -> int:
    """How many known items a sequence model reads when scoring the next one: ``score_next``/``rank_next``
    append the position being predicted to them."""
    return sequence_length - 1


def latest_context(items: np.ndarray, ratings: np.ndarray, sequence_length: int) -> tuple[np.ndarray, np.ndarray]:
    """The context a sequence model scores the next item after: the latest `context_length` items, left-padded."""
    return left_pad(items, ratings, context_length(sequence_length))


def popularity_prior(counts: np.ndarray) -> np.ndarray:
    """``log1p(count) / log1p(max count)`` in [0, 1] (float64), per item index: the popularity prior training
    adds to the ranking score's item biases, from the training rating counts (histories' ``popularity``)."""
    top = np.log1p(counts.max()) if len(counts) and counts.max() > 0 else 1.0
    prior: np.ndarray = (np.log1p(counts) / top).astype(np.float64)
    return prior


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class FileRef(_Strict):
    file: str = Field(description="File name inside the model store directory")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Metrics(_Strict):
    """Error on a held-out split, in stars and on the [0,1] scale (star error / (rating_max - rating_min);
    the tutorial's (r-1)/4 on ML-100K)."""

    split: str = Field(description="Where these were measured, e.g. 'u1.base->u1.test'", examples=["u1.base->u1.test"])
    n: int = Field(description="Number of held-out ratings")
    rmse: float
    mae: float
    rmse_scaled: float
    mae_scaled: float
    ranking: dict[str, float] = Field(default_factory=dict, description="e.g. ndcg@10, precision@10")


class DatasetInfo(_Strict):
    name: str = Field(
        description="Layout: ml-100k, ml-1m, ml-10m, ml-latest (20M/25M/32M/latest) or file", examples=["ml-100k"]
    )
    split: str = Field(description="Training data of the artifacts: 'full', 'u1', 'random', ...", examples=["full"])
    sha256: str = Field(description="SHA-256 of the ratings file (u.data, ratings.csv, ...) trained from")
    n_users: int
    n_items: int
    n_ratings: int
    # Defaults: stores written before the scale was recorded were all ML-100K's 1-5 stars.
    rating_min: float = Field(default=1.0, description="Lowest rating of the data set; served stars are >= it")
    rating_max: float = Field(default=5.0, description="Highest rating of the data set; served stars are <= it")


class ModelEntry(FileRef):
    name: ModelName
    kind: ModelKind = Field(
        description="pair: scores (user, item); sequence: scores items after a sequence of rated items"
    )
    sequence_length: int | None = Field(
        ge=1, description="Sequence models: the window it was trained on (requests are left-padded to it); else null"
    )
    version: str = Field(description="'<name>-<first 12 hex of sha256>'")
    trained_at: datetime
    training_seconds: float
    epochs: int
    torch_version: str
    hyperparameters: dict[str, float | int | str | bool | list[int]]
    metrics: list[Metrics] = Field(description="Held-out metrics, each naming its split")
    n_parameters: int
    rank_weight: float = Field(
        default=0.0,
        description="Weight of the [0,1]-scale rating score inside the ranking score, chosen on validation data",
    )
    dataset: DatasetInfo = Field(
        description="The data this model was trained on. It may differ from the store's `dataset` (the data of "
        "the latest export, whose histories are served) in its split when an export retrained other models only"
    )
    world_size: int = Field(
        default=1, ge=1, description="Processes that trained it data-parallel (torchrun ranks); 1 = one process"
    )

    @model_validator(mode="after")
    def _declared_kind(self) -> Self:
        # The kind is the model's (MODELS); an entry claiming another would get the wrong serving handler.
        expected = MODELS[self.name].kind
        if self.kind != expected:
            raise ValueError(f"{self.name} is a {expected} model, not {self.kind}")
        if (self.sequence_length is None) != (self.kind == "pair"):
            raise ValueError("sequence_length is set for a sequence model and only for one")
        return self


class Manifest(_Strict):
    schema_version: int
    store_version: str = Field(
        pattern=STORE_VERSION_PATTERN, description="This version's id; its manifest is versions/<id>.json"
    )
    created_at: datetime
    dataset: DatasetInfo
    catalog: FileRef
    histories: FileRef
    models: dict[ModelName, ModelEntry]


class Item(_Strict):
    item_id: int = Field(description="Raw MovieLens item id")
    title: str
    year: int | None
    genres: list[str]


class Catalog(_Strict):
    """Raw id <-> model index maps and item metadata. ``items[k]`` has model index ``k + 1``."""

    user_ids: list[int] = Field(description="Raw user id of model index k + 1")
    items: list[Item]
    genres: list[str]

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
    histories-<sha12>.npz     per-user training history in time order (CSR: indptr, items, ratings, timestamps)
                              and item popularity; plain numpy arrays, loaded with allow_pickle=False
    <model>-<sha12>.pt        TorchScript, one per model (mf, dense, lstm)

Every file is read as a regular file inside the store directory: a symlink, FIFO or device is refused, never
followed or opened for reading. A model's ``version`` and file name are derived from its SHA-256
(``<name>-<sha12>``, ``<name>-<sha12>.pt``), and the TorchScript archive carries `MODULE_META_FILE` naming the
model it holds, so an entry cannot point at another model's weights unnoticed.

Indices: users and items are indexed 1..n in the models (0 is the padding / unknown row). The catalog
maps raw MovieLens ids to those indices. Every TorchScript module returns ratings in stars within [1, 5]:

- mf, dense: ``predict(users: Tensor[B] int64, items: Tensor[B] int64) -> Tensor[B]``;
  ``score_all(user: Tensor[1] int64) -> Tensor[n_items + 1]`` (index 0 is padding, ignore it);
  ``item_embeddings() -> Tensor[n_items + 1, d]``.
- lstm: ``predict(items: Tensor[B, L] int64, ratings: Tensor[B, L] float32) -> Tensor[B, L]`` where items
  are oldest first, left-padded with 0, and ``ratings`` are the known stars of those items (0 = unknown). The
  value at position k depends only on items <= k and ratings < k.
  ``score_next(items: Tensor[1, L], ratings: Tensor[1, L]) -> Tensor[n_items + 1]`` scores every item as the
  next one after the context (an anonymous sequence, from the LSTM's zero state); ``score_all(user)`` as
  above, from the state after the user's whole training history.
  ``item_embeddings()`` as above.

Ranking (`/recommend`) orders candidates by ``stars + popularity_weight * log1p(count) / log1p(max count)``
with ``count`` from ``histories.npz["popularity"]``; a weight of 0 ranks by predicted rating alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# 2: store versions (Manifest.store_version, versions/) and each entry's own training data (ModelEntry.dataset).
SCHEMA_VERSION = 2
MANIFEST_FILE = "manifest.json"
VERSIONS_DIR = "versions"
LOCK_FILE = ".lock"
# How many store versions an export keeps by default (the live one and the ones a rollback can return to).
DEFAULT_KEEP_VERSIONS = 3
# A JSON file inside each TorchScript archive (torch.jit.save's _extra_files): {"model": "<name>"}.
MODULE_META_FILE = "recsys.json"
# Store version ids sort by creation time: UTC time to the microsecond, then 8 hex of the manifest's content.
STORE_VERSION_PATTERN = r"^[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}$"
MODEL_NAMES = ("mf", "dense", "lstm")
ModelName = Literal["mf", "dense", "lstm"]
# Sequence length the LSTM was trained on; requests are left-padded to it.
SEQUENCE_LENGTH = 10


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class FileRef(_Strict):
    file: str = Field(description="File name inside the model store directory")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Metrics(_Strict):
    """Error on a held-out split, in stars and on the tutorial's [0,1] scale ((r-1)/4)."""

    split: str = Field(description="Where these were measured, e.g. 'u1.base->u1.test'", examples=["u1.base->u1.test"])
    n: int = Field(description="Number of held-out ratings")
    rmse: float
    mae: float
    rmse_scaled: float
    mae_scaled: float
    ranking: dict[str, float] = Field(default_factory=dict, description="e.g. ndcg@10, precision@10")


class DatasetInfo(_Strict):
    name: str = Field(examples=["ml-100k"])
    split: str = Field(description="Training data of the artifacts: 'full', 'u1', ...", examples=["full"])
    sha256: str = Field(description="SHA-256 of the ratings file (u.data) the artifacts were trained from")
    n_users: int
    n_items: int
    n_ratings: int


class ModelEntry(FileRef):
    name: ModelName
    version: str = Field(description="'<name>-<first 12 hex of sha256>'")
    trained_at: datetime
    training_seconds: float
    epochs: int
    torch_version: str
    hyperparameters: dict[str, float | int | str | bool | list[int]]
    metrics: list[Metrics] = Field(description="Held-out metrics, each naming its split")
    n_parameters: int
    popularity_weight: float = Field(
        default=0.0,
        description="Ranking blend chosen on validation data: rank by stars + w * log1p(count) / log1p(max count)",
    )
    dataset: DatasetInfo = Field(
        description="The data this model was trained on. It may differ from the store's `dataset` (the data of "
        "the latest export, whose histories are served) in its split when an export retrained other models only"
    )


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

"""Approximate candidate retrieval for large catalogs: a FAISS index per model, built at load time.

Below `RetrievalConfig.min_items` items nothing here is used and every endpoint scores the whole catalog
(exact, as on ML-100K). From there on `/recommend`, ``POST /recommend`` and `/items/{id}/similar` ask an index
for a shortlist and score only that exactly.

Ranking space (models whose contract has rank vectors: mf, lstm). The ranking score is an inner product,
``rank_all(user) == rank_item_vectors() @ rank_user_vector(user)`` (the artifact contract), its item biases
folded in as the last column already; `RankSpace` appends one more for any item-only term (queries get a 1),
so maximum inner-product search over ``[rank_item_vectors, item_term]`` retrieves by the served score itself.
Dense is an MLP with no such form: its shortlist comes from the ranking space of its contract's
``shortlist_from`` (mf) for the same user, and dense re-ranks the shortlist with its own predictions (what that
costs is measured in docs/scaling.md).

Index: FAISS 4-bit product quantisation with SIMD "fast scan" (``IndexPQFastScan``, inner product), one code
per `dims_per_code` dimensions. It scans every item's 4-bit codes (~1 MiB for 62k items), then the service
re-scores the shortlist exactly, so quantisation error only decides which items reach the shortlist. Graph
indexes (HNSW) were measured and rejected for this: on the random-weight 25M-sized store their recall@10 was
0.15-0.74 (MIPS-augmented HNSW, M 16-32, efSearch 64-256) and search was slower than fast-scan's.

Filters stay exact, and paging is consistent: the order a (query, candidate mask) gets is fixed before any
page is cut from it. The shortlist is the index's top `depth` items that pass the mask, widened (x4, up to
`widenings` times) until at least `min_candidates` pass; with fewer even then, the whole mask is scored exactly.
The order is that shortlist by exact score, then every other passing item by exact score; a page inside the
shortlist costs only the shortlist, a deeper one scores the rest too. It never depends on `k` or `offset`, so
pages never repeat or skip an item, and the mask is applied to everything returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from app.errors import RegistryError
from app.handlers import ModelHandler
from app.settings import Settings

log = logging.getLogger(__name__)
WIDEN_FACTOR = 4
BITS_PER_CODE = 4  # fast scan works on 4-bit codes (16 centroids per sub-quantiser)
MIN_TRAINING_ITEMS = 39 * 2**BITS_PER_CODE  # FAISS's k-means asks for 39 points per centroid

Scorer = Callable[[np.ndarray], np.ndarray]  # exact scores of item indices, in their order


@dataclass(frozen=True)
class RetrievalConfig:
    """When and how widely to retrieve approximately (from `Settings`; see its field descriptions)."""

    min_items: int
    depth: int
    min_candidates: int
    widenings: int
    dims_per_code: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrievalConfig:
        return cls(
            min_items=settings.ann_min_items,
            depth=settings.ann_depth,
            min_candidates=settings.ann_min_candidates,
            widenings=settings.ann_widenings,
            dims_per_code=settings.ann_dims_per_code,
        )


def set_threads(n: int) -> None:
    """FAISS's OpenMP threads; one per worker, as torch's, so workers do not oversubscribe the cores."""
    faiss.omp_set_num_threads(n)


class VectorIndex:
    """Maximum inner-product search over rows 1..n of `vectors` (row 0 is padding and never returned)."""

    def __init__(self, vectors: np.ndarray, dims_per_code: int) -> None:
        rows = np.ascontiguousarray(vectors[1:], dtype=np.float32)
        self.n, self.dim = rows.shape
        codes = -(-self.dim // dims_per_code)
        # Zero columns pad the width to a whole number of codes; they add nothing to any inner product.
        self._width = codes * dims_per_code
        if self.n < MIN_TRAINING_ITEMS:
            # Too few items to train the quantiser's k-means (only when retrieval is forced on a toy catalog);
            # a flat scan is exact and instant at that size anyway.
            self._index: faiss.Index = faiss.IndexFlatIP(self._width)
        else:
            self._index = faiss.IndexPQFastScan(self._width, codes, BITS_PER_CODE, faiss.METRIC_INNER_PRODUCT)
        padded = self._pad(rows)
        # k-means with FAISS's fixed seed: every worker builds the same index, so a user's pages agree across
        # workers.
        self._index.train(padded)
        self._index.add(padded)

    def _pad(self, rows: np.ndarray) -> np.ndarray:
        if self._width == self.dim:
            return rows
        return np.hstack([rows, np.zeros((len(rows), self._width - self.dim), dtype=np.float32)])

    def search(self, query: np.ndarray, depth: int) -> np.ndarray:
        """Item indices (1..n) of the approximately best `depth` inner products with `query`, best first."""
        depth = min(depth, self.n)
        _, found = self._index.search(self._pad(query.astype(np.float32)[None]), depth)
        ids: np.ndarray = found[0]
        return ids[ids >= 0] + 1


@dataclass(frozen=True, eq=False)
class RankSpace:
    """Augmented ranking vectors of a model and their index: ``score = vectors[item] @ query(user_vector)``."""

    source: str  # the model whose ranking vectors these are
    vectors: np.ndarray  # [n_items + 1, d + 1] float32: rank_item_vectors, then the item-only term
    index: VectorIndex

    @classmethod
    def build(cls, source: str, item_vectors: np.ndarray, item_term: np.ndarray, dims_per_code: int) -> RankSpace:
        vectors = np.ascontiguousarray(np.hstack([item_vectors, item_term[:, None]]), dtype=np.float32)
        return cls(source=source, vectors=vectors, index=VectorIndex(vectors, dims_per_code))

    @staticmethod
    def query(user_vector: np.ndarray) -> np.ndarray:
        query: np.ndarray = np.append(user_vector.astype(np.float32), np.float32(1.0))
        return query

    def scorer(self, query: np.ndarray) -> Scorer:
        return lambda items: self.vectors[items] @ query


@dataclass(frozen=True, eq=False)
class ModelRetrieval:
    """What one model retrieves with: a ranking space (its own, or mf's for dense, then `rerank`) and a cosine
    index over its unit item embeddings for similar items."""

    config: RetrievalConfig
    space: RankSpace | None  # None: no space to shortlist from, so recommendations stay exact
    rerank: bool  # the space is another model's: re-score its shortlist with this model
    similar: VectorIndex


def build_retrieval(
    directory: Path, models: Mapping[str, ModelHandler], n_items: int, config: RetrievalConfig | None
) -> dict[str, ModelRetrieval]:
    """Indexes over the verified, loaded models (nothing read from disk): a ranking space per model, from the
    rank vectors of its contract's ``shortlist_from`` model, and a cosine index over its unit embeddings; none
    below the catalog-size threshold."""
    if config is None or n_items < config.min_items:
        return {}
    started = time.perf_counter()
    result: dict[str, ModelRetrieval] = {}
    for name, loaded in models.items():
        shortlist_from = loaded.contract.shortlist_from
        source = models.get(shortlist_from)
        space = None
        if source is not None:
            if not source.contract.rank_vectors:
                raise RegistryError(f"{directory / source.entry.file}: approximate retrieval needs rank vectors")
            vectors = source.item_vectors()
            if vectors.shape[0] != n_items + 1 or not np.isfinite(vectors).all():
                raise RegistryError(f"{directory / source.entry.file}: rank_item_vectors() is not finite [n+1, d]")
            # The item biases are a column of the vectors already: no item-only term.
            space = RankSpace.build(source.name, vectors, np.zeros(n_items + 1, np.float32), config.dims_per_code)
        else:
            log.warning("%s: no %s model to shortlist from; its recommendations stay exact", name, shortlist_from)
        result[name] = ModelRetrieval(
            config=config,
            space=space,
            rerank=source is not loaded,
            similar=VectorIndex(loaded.unit_embeddings, config.dims_per_code),
        )
    log.info("built retrieval indexes for %d items in %.2f s", n_items, time.perf_counter() - started)
    return result


def ranked_page(
    search: Callable[[int], np.ndarray],
    score: Scorer,
    mask: np.ndarray,
    *,
    k: int,
    offset: int,
    config: RetrievalConfig,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Item indices ranked offset..offset+k among those `mask` allows, their scores, and how many are allowed.

    `search(depth)` gives the index's best `depth` items; `score(items)` their exact scores. Ties go to the
    lower index, as in the exact path."""
    total = int(np.count_nonzero(mask))
    need = min(offset + k, total)
    shortlist = _shortlist(search, mask, total, config)
    if shortlist is None:
        shortlist = np.flatnonzero(mask)
    head, head_scores = _sorted(shortlist, score(shortlist))
    if need <= len(head):
        return head[offset:need], head_scores[offset:need], total
    # Deeper than the shortlist: the rest of the allowed items follow it, in exact order.
    rest_mask = mask.copy()
    rest_mask[head] = False
    rest = np.flatnonzero(rest_mask)
    tail, tail_scores = _sorted(rest, score(rest))
    ordered, scores = np.r_[head, tail], np.r_[head_scores, tail_scores]
    return ordered[offset:need], scores[offset:need], total


def _shortlist(
    search: Callable[[int], np.ndarray], mask: np.ndarray, total: int, config: RetrievalConfig
) -> np.ndarray | None:
    """The index's allowed items at the first depth where at least `min_candidates` are allowed; None when
    even the widest search finds fewer (then every allowed item is scored). Depends on the query and the mask
    only, never on the page asked for."""
    if total < config.min_candidates:
        return None  # so few allowed items that scoring them all is cheap
    depth = config.depth
    for _ in range(config.widenings + 1):
        found = search(depth)
        kept: np.ndarray = found[mask[found]]
        if len(kept) >= config.min_candidates:
            return kept
        depth *= WIDEN_FACTOR
    return None


def _sorted(items: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((items, -scores))
    return items[order], scores[order]

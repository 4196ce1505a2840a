"""Title search for `GET /items?q=`: case- and accent-insensitive, ranked by how well a title matches, then by
how often the film was rated in training, so "star wars" finds Star Wars first and clients can look ids up.

Titles and the query are normalised alike (Unicode NFKD with combining marks dropped, case-folded, anything
but letters and digits a space), and MovieLens' trailing articles are read both ways ("Empire Strikes Back,
The (1980)" matches "the empire"). Match tiers, best first: the whole title; the title's start; the start of
a word; every query word starting a title word in any order; anywhere in the title. The normalised titles are
built once per loaded registry.
"""

from __future__ import annotations

import re
import unicodedata
import weakref
from dataclasses import dataclass

import numpy as np

from app.registry import ModelRegistry
from app.schemas import ItemResponse, ItemSearchResponse

_NOT_WORD = re.compile(r"[^0-9a-z]+")
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
_TRAILING_ARTICLE = re.compile(r"^(.*), (the|a|an|l'|le|la|les|il|el|der|die|das)$", re.IGNORECASE)
TIERS = 5  # exact, prefix, word prefix, all words, substring


def normalise(text: str) -> str:
    """Lower-case ASCII words separated by single spaces: "Amélie" -> "amelie", "L.A." -> "l a"."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_NOT_WORD.sub(" ", stripped.casefold()).split())


def title_forms(title: str) -> tuple[str, ...]:
    """The normalised forms a title is matched in: as written (without year) and with a trailing article
    moved to the front."""
    bare = _YEAR.sub("", title).strip()
    forms = [normalise(bare)]
    moved = _TRAILING_ARTICLE.match(bare)
    if moved:
        forms.append(normalise(f"{moved.group(2)} {moved.group(1)}"))
    return tuple(dict.fromkeys(forms))


@dataclass(frozen=True)
class TitleIndex:
    forms: list[tuple[str, ...]]  # forms[k] for item index k + 1
    popularity: np.ndarray  # [n_items + 1]


_INDEXES: weakref.WeakKeyDictionary[ModelRegistry, TitleIndex] = weakref.WeakKeyDictionary()


def title_index(registry: ModelRegistry) -> TitleIndex:
    index = _INDEXES.get(registry)
    if index is None:
        index = TitleIndex([title_forms(item.title) for item in registry.catalog.items], registry.popularity)
        _INDEXES[registry] = index
    return index


def match_tier(query: str, words: list[str], form: str) -> int:
    """0 (best) to TIERS - 1 for a match of the normalised `query` in one title form, TIERS for none."""
    if form == query:
        return 0
    if form.startswith(query):
        return 1
    if f" {query}" in f" {form}":
        return 2
    title_words = form.split()
    if all(any(t.startswith(w) for t in title_words) for w in words):
        return 3
    if query in form:
        return 4
    return TIERS


def search_items(*, registry: ModelRegistry, q: str, limit: int) -> ItemSearchResponse:
    """Items whose title matches `q`, best match first, equally good matches most rated first."""
    query = normalise(q)
    words = query.split()
    index = title_index(registry)
    hits: list[tuple[int, int, int]] = []  # (tier, -count, item index)
    if query:
        for k, forms in enumerate(index.forms, start=1):
            tier = min(match_tier(query, words, form) for form in forms)
            if tier < TIERS:
                hits.append((tier, -int(index.popularity[k]), k))
    hits.sort()
    items = []
    for _, negative_count, k in hits[:limit]:
        item = registry.item(k)
        items.append(
            ItemResponse(
                item_id=item.item_id, title=item.title, year=item.year, genres=item.genres, n_ratings=-negative_count
            )
        )
    return ItemSearchResponse(query=q, total=len(hits), items=items)

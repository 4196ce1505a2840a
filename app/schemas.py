"""Request and response bodies of the HTTP API, with the examples `/docs` shows.

Examples use real MovieLens 100K ids (user 196, items 242 "Kolya" and 302 "L.A. Confidential"), so "Try it
out" against the committed model store returns real answers.

Strict input, everywhere, rather than guessing: JSON bodies are parsed by `app.strict_json` (no duplicate keys,
no NaN/Infinity, no lone surrogates) and validated in pydantic's strict mode (an integer is a JSON integer:
"10", 10.0 and true are not 10; a boolean is true or false: 0 and "yes" are not false); integers in paths and
query strings are plain decimal digits (`DECIMAL_DIGITS`: "196.0", "+196" and " 196" are not 196) and
booleans there are the words true or false (`TRUE_OR_FALSE`). JSON Schema calls 450.0 an integer; this API
does not, and says so in STRICT_NOTE, which every request body's description carries.

A `k` is bounded by the catalog of the loaded store: its schema carries ``x-maximum-from: catalog`` and
`app.main` sets ``maximum`` to the catalog size in the served /openapi.json.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from app.artifacts import (
    SEQUENCE_LENGTH,
    DatasetInfo,
    Item,
    ModelEntry,
    ModelName,
    context_length,
    models_of_kind,
)

MAX_ID = 2**31 - 1
MAX_PAIR_ITEMS = 1000
MAX_SESSION_ITEMS = 1000
MAX_EXCLUDE = 1000  # ids to leave out of a recommendation; more than half the ML-100K catalog
MAX_GENRES = 32  # genre filters; ML-100K has 19 genres
MAX_GENRE_LENGTH = 64

# Where a schema carries these, `app.main` fills in the loaded catalog's facts: `maximum` = its size; `enum` =
# its genres; `pattern` = a comma-separated list of its genres (the server also takes them in any case).
CATALOG_BOUND: dict[str, Any] = {"x-maximum-from": "catalog"}
CATALOG_GENRE: dict[str, Any] = {"x-enum-from": "genres"}
STORE_SCALE: dict[str, Any] = {"x-range-from": "rating scale"}
CATALOG_GENRE_LIST: dict[str, Any] = {"x-pattern-from": "genres"}
# One raw id, 1..MAX_ID, in plain decimal digits, as an ECMA regex (JSON Schema's dialect) and for `re`.
ID_PATTERN = (
    "[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}"
    "|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7]"
)
assert MAX_ID == 2147483647  # ID_PATTERN spells this bound out


def comma_list_pattern(word: str) -> str:
    """A regex for "a, b,,c": words matching `word`, separated by commas, spaces around them, empty ones allowed."""
    return f"^ *(?:(?:{word}) *)?(?:, *(?:(?:{word}) *)?)*$"


STRICT_NOTE = (
    "Strict JSON: duplicate keys, NaN/Infinity and lone surrogates are rejected; integers must be JSON integers "
    '(not "10", 10.0 or true) and booleans true or false (not 0 or "yes")."'
)
PAIR_MODELS = models_of_kind("pair")  # the models /predict/{model} serves; the sequence model has /predict/lstm

# A minus sign is let through so that "-1" gets the range error ("greater than or equal to 1"), which says more.
_DECIMAL = re.compile(r"0|-?[1-9][0-9]{0,18}")


def _decimal_digits(value: object) -> object:
    # Paths and query strings arrive as text; pydantic's lax int would read "196.0", "+196" and " 196" as 196.
    if isinstance(value, str) and not (value.isascii() and _DECIMAL.fullmatch(value)):
        raise PydanticCustomError("int_parsing", "Input should be a valid integer in plain decimal digits")
    return value


def _true_or_false(value: object) -> object:
    # Lax bool would read "yes", "on", "1" and "t" as true, and "0", "off" as false.
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise PydanticCustomError("bool_parsing", "Input should be a valid boolean: true or false")
        return value == "true"
    return value


# For path and query parameters, after their Path()/Query() (`Annotated[int, Query(ge=1), DECIMAL_DIGITS]`):
# placed before it, FastAPI would write ge/le into the schema verbatim instead of minimum/maximum.
DECIMAL_DIGITS = BeforeValidator(_decimal_digits)
TRUE_OR_FALSE = BeforeValidator(_true_or_false)
DECIMAL_NOTE = "; plain decimal digits (no plus sign, spaces, fraction or leading zeros)"
BOOL_NOTE = "; the word true or false"

RawId = Annotated[int, Field(strict=True, ge=1, le=MAX_ID, description="Raw MovieLens id")]
Genre = Annotated[
    str,
    Field(min_length=1, max_length=MAX_GENRE_LENGTH, description="A genre, any case", json_schema_extra=CATALOG_GENRE),
]
# The scale is the store's (GET /models: dataset.rating_min..rating_max, 1-5 on ML-100K, 0.5-5 on the half-star
# sets); the service checks it, so a schema bound here would wrongly refuse half stars or another scale.
Stars = Annotated[
    float,
    Field(
        strict=True,
        gt=0,
        description="A rating in stars, on the store's scale (`minimum`..`maximum`; 1 to 5 for ML-100K)",
        json_schema_extra=STORE_SCALE,
    ),
]
DIVERSITY_DESCRIPTION = (
    "0 to 1: re-rank by maximal marginal relevance over the model's item embeddings; 0 is the plain ranking, "
    "0.3 trades a little accuracy for visibly broader lists"
)


class _Schema(BaseModel):
    # The one base configuration: fields such as model_version are ours, not pydantic's. Subclasses add to it
    # (pydantic merges a subclass's model_config into its parents').
    model_config = ConfigDict(protected_namespaces=())


class _Request(_Schema):
    # A misspelt field ("item_id" for "item_ids") is an error, not silently ignored; strict: nothing is coerced.
    model_config = ConfigDict(extra="forbid", strict=True)


class _Stored(_Schema):
    # Responses that mirror a stored record (app.artifacts) derive from it, so a field added there is served
    # too. Listed after the record among the bases, so this config overrides the record's: a response is
    # built, not parsed, and neither frozen nor extra="forbid" (additionalProperties: false) applies to it. A
    # response always carries every field, so the documented schema requires the ones with defaults too.
    model_config = ConfigDict(extra="ignore", frozen=False, json_schema_serialization_defaults_required=True)


class ItemFields(Item, _Stored):
    """A catalog item's fields, as every response listing items shows them."""


def _check_ratings(items: list[int], ratings: list[float] | None) -> None:
    if ratings is not None and len(ratings) > len(items):
        raise ValueError(
            f"ratings has {len(ratings)} values but items only {len(items)}: ratings are the known stars "
            "of the leading items, at most one per item"
        )


# --- predict ------------------------------------------------------------------------------------------------


class PredictRequest(_Request):
    __doc__ = f"A user and the items to predict. {STRICT_NOTE}"

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"user_id": 196, "item_ids": [242, 302, 377]}]},
    )

    user_id: RawId
    item_ids: list[RawId] = Field(
        min_length=1, max_length=MAX_PAIR_ITEMS, description=f"1 to {MAX_PAIR_ITEMS} raw item ids"
    )


class SequencePredictRequest(_Request):
    __doc__ = (
        f"Either an anonymous sequence (`items`, optional `ratings`) or a known user (`user_id`, `item_ids`). "
        f"{STRICT_NOTE}"
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [209, 32, 189], "ratings": [4, 5]}, {"user_id": 196, "item_ids": [242, 302]}],
            # The two forms, so the schema admits exactly what the validator below does.
            "oneOf": [
                {"required": ["items"], "not": {"anyOf": [{"required": ["user_id"]}, {"required": ["item_ids"]}]}},
                {
                    "required": ["user_id", "item_ids"],
                    "not": {"anyOf": [{"required": ["items"]}, {"required": ["ratings"]}]},
                },
            ],
        },
    )

    # Constraints sit on the list types, not the fields: pydantic would apply a field's min_length to null too.
    items: Annotated[list[RawId], Field(min_length=1, max_length=SEQUENCE_LENGTH)] | SkipJsonSchema[None] = Field(
        default=None, description=f"Anonymous sequence: 1 to {SEQUENCE_LENGTH} raw item ids, oldest first"
    )
    ratings: Annotated[list[Stars], Field(max_length=SEQUENCE_LENGTH)] | SkipJsonSchema[None] = Field(
        default=None, description="Known stars of the leading items (at most one per item); later items are unrated"
    )
    user_id: RawId | SkipJsonSchema[None] = Field(
        default=None, description="Known user: items are predicted after the user's whole training history"
    )
    item_ids: Annotated[list[RawId], Field(min_length=1, max_length=MAX_PAIR_ITEMS)] | SkipJsonSchema[None] = Field(
        default=None, description=f"With user_id: 1 to {MAX_PAIR_ITEMS} raw item ids to predict"
    )

    @model_validator(mode="after")
    def _one_form(self) -> SequencePredictRequest:
        # A field is given or left out, never null: the schema's two forms say which fields each one has.
        if any(getattr(self, name) is None for name in self.model_fields_set):
            raise ValueError("give either items (and ratings) or user_id and item_ids")
        if self.user_id is not None or self.item_ids is not None:
            if self.user_id is None or self.item_ids is None or self.items is not None or self.ratings is not None:
                raise ValueError("give either items (and ratings) or user_id and item_ids")
        elif self.items is None:
            raise ValueError("give either items (and ratings) or user_id and item_ids")
        else:
            _check_ratings(self.items, self.ratings)
        return self


class Prediction(_Schema):
    item_id: int
    rating: float = Field(description="Predicted stars, clamped to the store's scale ([1, 5] for ML-100K)")


class PredictResponse(_Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "mf",
                    "model_version": "mf-8b312703ebc9",
                    "user_id": 196,
                    "predictions": [{"item_id": 242, "rating": 3.91}, {"item_id": 302, "rating": 4.12}],
                }
            ]
        },
    )

    model: str
    model_version: str
    user_id: int
    predictions: list[Prediction] = Field(description="One per requested item, in request order")


class SequencePredictResponse(_Schema):  # user_id: set for the known-user form
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "lstm",
                    "model_version": "lstm-c46d44413be7",
                    "user_id": None,
                    "predictions": [
                        {"item_id": 209, "rating": 3.61},
                        {"item_id": 32, "rating": 3.87},
                        {"item_id": 189, "rating": 4.02},
                    ],
                }
            ]
        },
    )

    model: str
    model_version: str
    user_id: int | None = Field(default=None, description="The known user, for the user_id form")
    predictions: list[Prediction] = Field(
        description="One per given item, in order; the rating at position k uses items up to k and "
        "ratings before k only"
    )


# --- recommend ----------------------------------------------------------------------------------------------


class Because(_Schema):
    item_id: int
    title: str
    similarity: float = Field(description="Cosine similarity of the two items' embeddings in the model")


class RecommendedItem(ItemFields):
    score: float = Field(
        description="Ranking score, best first: the model's ranking score (personalized and session; higher is "
        "better, not in stars), or the number of training ratings (popular)"
    )
    rating: float | None = Field(description="Predicted stars; null for the popularity fallback")
    because: list[Because] | None = Field(
        default=None,
        description="With explain=true: up to three items the user rated 4 or more that are most similar",
    )


class RecommendResponse(_Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": 196,
                    "model": "mf",
                    "model_version": "mf-8b312703ebc9",
                    "strategy": "personalized",
                    "total": 1571,
                    "offset": 0,
                    "items": [
                        {
                            "item_id": 408,
                            "title": "Close Shave, A (1995)",
                            "year": 1995,
                            "genres": ["Animation", "Comedy", "Thriller"],
                            "score": 4.71,
                            "rating": 4.71,
                            "because": None,
                        }
                    ],
                }
            ]
        },
    )

    user_id: int | None = Field(description="null for anonymous (session) recommendations")
    model: str
    model_version: str | None = Field(description="null when no model ranked the items (popular)")
    strategy: Literal["personalized", "popular", "session", "fold-in"] = Field(
        description="personalized: a known user; popular: the fallback for an unknown one; session: the LSTM "
        "after an anonymous session; fold-in: mf or dense with the session's ratings folded in as a new user"
    )
    total: int = Field(description="How many items matched the filters (before offset and k)")
    offset: int
    items: list[RecommendedItem] = Field(description="Best first")


class SessionRecommendRequest(_Request):
    __doc__ = f"An anonymous session: items seen, oldest first, and what to recommend. {STRICT_NOTE}"

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [50, 181, 172, 174], "ratings": [5, 4, 5], "k": 10, "model": "lstm"}]
        },
    )

    items: list[RawId] = Field(
        min_length=1,
        max_length=MAX_SESSION_ITEMS,
        description=f"Items seen in this session, oldest first; the last {context_length(SEQUENCE_LENGTH)} are the "
        "LSTM's context, and none of them is recommended",
    )
    ratings: list[Stars] | None = Field(
        default=None,
        max_length=MAX_SESSION_ITEMS,
        description="Known stars of the leading items (at most one per item)",
    )
    k: int = Field(
        default=10,
        ge=1,
        le=MAX_ID,
        description="How many items to return; at most the catalog size (`maximum`)",
        json_schema_extra=CATALOG_BOUND,
    )
    model: ModelName = Field(
        default="lstm",
        description=f"lstm: the next items after the session (its last {context_length(SEQUENCE_LENGTH)} items are "
        "the context); mf, dense: the "
        "rated items are folded in as a new user (a least-squares user vector against the frozen item factors), "
        "so only items with a rating inform them",
    )
    genres: list[Genre] | None = Field(
        default=None, max_length=MAX_GENRES, description="Only items having any of these genres"
    )
    exclude: list[RawId] | None = Field(
        default=None, max_length=MAX_EXCLUDE, description="Raw item ids never to recommend"
    )
    offset: int = Field(default=0, ge=0, le=MAX_ID, description="Skip this many of the best items (paging)")
    explain: bool = Field(default=False, description="Add `because`: similar session items rated 4+")
    diversity: float = Field(default=0.0, ge=0.0, le=1.0, description=DIVERSITY_DESCRIPTION)

    @model_validator(mode="after")
    def _ratings_fit(self) -> SessionRecommendRequest:
        _check_ratings(self.items, self.ratings)
        return self


# --- items --------------------------------------------------------------------------------------------------


class ItemResponse(ItemFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "item_id": 242,
                    "title": "Kolya (1996)",
                    "year": 1996,
                    "genres": ["Comedy"],
                    "n_ratings": 117,
                }
            ]
        },
    )

    n_ratings: int = Field(description="Ratings of this item in the models' training data")


class SimilarItem(ItemFields):
    similarity: float = Field(description="Cosine similarity of the item embeddings, in [-1, 1]")


class SimilarResponse(_Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "item_id": 50,
                    "title": "Star Wars (1977)",
                    "model": "mf",
                    "model_version": "mf-8b312703ebc9",
                    "items": [
                        {
                            "item_id": 172,
                            "title": "Empire Strikes Back, The (1980)",
                            "year": 1980,
                            "genres": ["Action", "Adventure", "Drama", "Romance", "Sci-Fi", "War"],
                            "similarity": 0.83,
                        }
                    ],
                }
            ]
        },
    )

    item_id: int
    title: str
    model: str
    model_version: str
    items: list[SimilarItem] = Field(description="Most similar first; never the item itself")


# --- models and health --------------------------------------------------------------------------------------


class ModelInfo(ModelEntry, _Stored):
    """A loaded model: its manifest entry (`app.artifacts.ModelEntry`), every field of it."""


class StoreVersionInfo(_Schema):
    id: str = Field(description="Store version id, for POST /admin/reload?version=")
    created_at: datetime | None = Field(description="When it was exported; null if its manifest is unreadable")
    models: dict[str, str] = Field(description="Model name -> version in this store version")
    live: bool = Field(description="manifest.json points at it: what start-up and a plain reload serve")
    serving: bool = Field(description="This process serves it now")
    problem: str | None = Field(default=None, description="Why it cannot be loaded, if it cannot")


class ModelsResponse(_Schema):
    schema_version: int
    store_version: str = Field(description="The store version being served")
    dataset: DatasetInfo = Field(description="The store's data: its catalog, and the histories served")
    models: list[ModelInfo]
    versions: list[StoreVersionInfo] = Field(description="Kept store versions, newest first (rollback targets)")


class HealthResponse(_Schema):
    status: Literal["ok"] = "ok"


class ReadyResponse(_Schema):
    status: Literal["ready"] = "ready"
    models: dict[str, str] = Field(description="Loaded model name -> version", examples=[{"mf": "mf-8b31"}])
    dataset_split: str
    load_seconds: float


class ReloadResponse(_Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "reloaded",
                    "previous": {"mf": "mf-8b312703ebc9", "dense": "dense-0c1d2e3f4a5b"},
                    "models": {"mf": "mf-5e6f7a8b9c0d", "dense": "dense-0c1d2e3f4a5b"},
                    "changed": ["mf"],
                    "load_seconds": 1.42,
                    "previous_store_version": "20260601T120000000000Z-0c1d2e3f",
                    "store_version": "20260602T090000000000Z-5e6f7a8b",
                }
            ]
        },
    )

    status: Literal["reloaded"] = "reloaded"
    previous: dict[str, str] = Field(description="Model name -> version served before the reload")
    models: dict[str, str] = Field(description="Model name -> version served from now on")
    changed: list[str] = Field(description="Models whose version differs (added, replaced or removed)")
    load_seconds: float = Field(description="Reading, verifying and warming the new store")
    previous_store_version: str | None = Field(description="Store version served before the reload")
    store_version: str = Field(description="Store version served from now on")


class ErrorResponse(_Schema):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{"detail": "unknown item ids: 99999, 88888", "unknown_item_ids": [99999, 88888]}]
        },
    )

    detail: str = Field(description="What went wrong, for a person; other fields carry the facts")


class ValidationIssue(_Schema):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(_Schema):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "detail": [
                        {
                            "loc": ["body", "item_ids"],
                            "msg": "List should have at least 1 item after validation, not 0",
                            "type": "too_short",
                        }
                    ]
                },
                {"detail": "k=5000 is larger than the catalog (1682 items); ask for at most 1682"},
            ]
        },
    )

    detail: list[ValidationIssue] | str = Field(
        description="Invalid input: a list of issues (field location and message) or one message"
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown model, user or item; the message names them"},
    422: {"model": ValidationErrorResponse, "description": "Invalid input; the message says what to fix"},
}


# --- new users, batch, search (issue 18) --------------------------------------------------------------------

MAX_BATCH_USERS = 1000
MAX_SEARCH_RESULTS = 100
MAX_QUERY_LENGTH = 200


class PairPredictRequest(_Request):
    """`POST /predict/{mf,dense}`: a known user (`user_id`) or a visitor (`items` and `ratings`), and the items
    to predict. One body with both forms rather than a union, so a bad field is reported at its own location."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"user_id": 196, "item_ids": [242, 302, 377]},
                {"items": [50, 172, 181, 1, 127], "ratings": [5, 5, 4, 3, 5], "item_ids": [242, 302]},
            ]
        },
    )

    user_id: RawId | None = Field(default=None, description="A known user; omit it for a visitor")
    items: list[RawId] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SESSION_ITEMS,
        description="A visitor's rated items (raw ids), folded in as a new user; instead of user_id",
    )
    ratings: list[Stars] | None = Field(
        default=None, min_length=1, max_length=MAX_SESSION_ITEMS, description="The visitor's stars, one per item"
    )
    item_ids: list[RawId] = Field(
        min_length=1, max_length=MAX_PAIR_ITEMS, description=f"1 to {MAX_PAIR_ITEMS} raw item ids to predict"
    )

    @model_validator(mode="after")
    def _one_form(self) -> PairPredictRequest:
        visitor = self.items is not None or self.ratings is not None
        if (self.user_id is None) == (not visitor):
            raise ValueError("send user_id (a known user) or items and ratings (a visitor), not both or neither")
        if visitor and (self.items is None or self.ratings is None or len(self.items) != len(self.ratings)):
            raise ValueError("a visitor sends items and ratings of the same length: one rating per item")
        return self


class AnonymousPredictResponse(_Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "mf",
                    "model_version": "mf-90a88f206e2c",
                    "folded_in": 5,
                    "predictions": [{"item_id": 242, "rating": 3.87}, {"item_id": 302, "rating": 4.21}],
                }
            ]
        },
    )

    model: str
    model_version: str
    folded_in: int = Field(description="How many rated items the visitor's user vector was solved from")
    predictions: list[Prediction] = Field(description="One per requested item, in request order")


class BatchRecommendRequest(_Request):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"user_ids": [196, 186, 22], "k": 3, "model": "mf"}]},
    )

    user_ids: list[RawId] = Field(
        min_length=1, max_length=MAX_BATCH_USERS, description=f"1 to {MAX_BATCH_USERS} known raw user ids"
    )
    k: int = Field(default=10, ge=1, le=MAX_ID, description="Items per user (at most the catalog size)")
    model: ModelName = Field(default="mf")
    exclude_seen: bool = Field(default=True, description="Leave out items each user rated in training")
    genres: list[Genre] | None = Field(
        default=None, max_length=MAX_GENRES, description="Only items having any of these genres"
    )
    exclude: list[RawId] | None = Field(
        default=None, max_length=MAX_EXCLUDE, description="Raw item ids never to recommend"
    )
    offset: int = Field(default=0, ge=0, le=MAX_ID, description="Skip this many of each user's best items")
    diversity: float = Field(default=0.0, ge=0.0, le=1.0, description=DIVERSITY_DESCRIPTION)


class BatchUserResult(_Schema):
    user_id: int
    total: int = Field(description="How many items matched the filters for this user (before offset and k)")
    items: list[RecommendedItem] = Field(description="Best first")


class BatchRecommendResponse(_Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "mf",
                    "model_version": "mf-90a88f206e2c",
                    "method": "matrix",
                    "offset": 0,
                    "results": [
                        {
                            "user_id": 196,
                            "total": 1643,
                            "items": [
                                {
                                    "item_id": 50,
                                    "title": "Star Wars (1977)",
                                    "year": 1977,
                                    "genres": ["Action", "Adventure", "Romance", "Sci-Fi", "War"],
                                    "score": 16.0381,
                                    "rating": 4.0381,
                                    "because": None,
                                }
                            ],
                        }
                    ],
                }
            ]
        },
    )

    model: str
    model_version: str
    method: Literal["matrix", "loop"] = Field(
        description="matrix: every user scored in one matrix product from arrays extracted at load (mf, lstm); "
        "loop: one score_all call per user, for a model with no batched form (dense)"
    )
    offset: int
    results: list[BatchUserResult] = Field(description="One per requested user, in request order")


class ItemSearchResponse(_Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "query": "star wars",
                    "total": 1,
                    "items": [
                        {
                            "item_id": 50,
                            "title": "Star Wars (1977)",
                            "year": 1977,
                            "genres": ["Action", "Adventure", "Romance", "Sci-Fi", "War"],
                            "n_ratings": 583,
                        }
                    ],
                }
            ]
        },
    )

    query: str
    total: int = Field(description="How many titles matched (before limit)")
    items: list[ItemResponse] = Field(description="Best match first; equal matches by number of ratings")

"""Domain errors raised by the registry and the services; `app.main` maps them to HTTP responses.

Each carries a message a person can act on (it becomes the response's ``detail``) and, in ``extra``, the
machine-readable facts behind it (the unknown ids, the valid choices), added to the response body as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class RecsysError(Exception):
    """Base of every domain error."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class RegistryError(RecsysError):
    """The model store cannot be loaded; the message names the file and what is wrong with it."""


class NotReadyError(RecsysError):
    """No model registry is loaded (yet)."""


class UnknownModelError(RecsysError):
    def __init__(self, name: str, available: Iterable[str]) -> None:
        names = list(available)
        super().__init__(
            f"unknown model {name!r} for this operation; available: {', '.join(names) or '(none)'}",
            model=name,
            available=names,
        )


def _ids(ids: Sequence[int]) -> str:
    return ", ".join(str(i) for i in ids)


class UnknownUserError(RecsysError):
    def __init__(self, user_ids: Sequence[int]) -> None:
        super().__init__(f"unknown user id: {_ids(user_ids)}", unknown_user_ids=list(user_ids))


class UnknownItemError(RecsysError):
    def __init__(self, item_ids: Sequence[int]) -> None:
        noun = "id" if len(item_ids) == 1 else "ids"
        super().__init__(f"unknown item {noun}: {_ids(item_ids)}", unknown_item_ids=list(item_ids))


class UnknownGenreError(RecsysError):
    def __init__(self, genres: Sequence[str], valid: Sequence[str]) -> None:
        super().__init__(
            f"unknown genre {', '.join(map(repr, genres))}; valid genres: {', '.join(valid)}",
            unknown_genres=list(genres),
            valid_genres=list(valid),
        )


class InvalidRequestError(RecsysError):
    """A well-formed request that cannot be served as asked (e.g. k larger than the catalog)."""


class ReloadFailedError(RecsysError):
    """A hot reload could not load the new store; the previous models keep serving."""

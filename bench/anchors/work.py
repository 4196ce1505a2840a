"""The model work of each benchmarked route, with nothing around it: what every anchor app calls.

Loaded through `app.registry.ModelRegistry.load`, so the anchors serve the very artifacts (checksummed,
frozen, warmed) the service does. Each function takes decoded inputs and returns the response as a plain
dict in the service's JSON shape; the anchors differ only in how they parse, route and serialise.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.artifacts import SEQUENCE_LENGTH
from app.registry import ModelRegistry

DECIMALS = 4


def load_registry() -> ModelRegistry:
    """The store in RECSYS_MODELS_DIR, loaded as the service loads it, with the service's process settings:
    one torch thread, and everything alive after loading exempt from the cyclic GC (`app.main.lifespan`)."""
    torch.set_num_threads(1)
    registry = ModelRegistry.load(Path(os.environ["RECSYS_MODELS_DIR"]))
    gc.collect()
    gc.freeze()
    return registry


class Work:
    """Per-route model work over one registry, with titles and metadata precomputed per item."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.meta = [None] + [
            {"item_id": i.item_id, "title": i.title, "year": i.year, "genres": list(i.genres)}
            for i in registry.catalog.items
        ]

    def predict(self, model: str, user_id: int, item_ids: list[int]) -> dict[str, Any]:
        r = self.registry
        loaded = r.models[model]
        items = r.item_indices(item_ids)
        with torch.inference_mode():
            stars = loaded.module.predict(torch.full((len(items),), r.user_index(user_id)), torch.from_numpy(items))
        ratings = np.round(stars.numpy().astype(np.float64), DECIMALS).tolist()
        return {
            "model": model,
            "model_version": loaded.version,
            "user_id": user_id,
            "predictions": [{"item_id": i, "rating": s} for i, s in zip(item_ids, ratings, strict=True)],
        }

    def predict_sequence(self, items: list[int], ratings: list[float]) -> dict[str, Any]:
        r = self.registry
        loaded = r.models["lstm"]
        n = len(items)
        padded = np.zeros((1, SEQUENCE_LENGTH), dtype=np.int64)
        padded[0, SEQUENCE_LENGTH - n :] = r.item_indices(items)
        stars_in = np.zeros((1, SEQUENCE_LENGTH), dtype=np.float32)
        stars_in[0, SEQUENCE_LENGTH - n : SEQUENCE_LENGTH - n + len(ratings)] = ratings
        with torch.inference_mode():
            out = loaded.module.predict(torch.from_numpy(padded), torch.from_numpy(stars_in))
        stars = np.round(out.numpy()[0, SEQUENCE_LENGTH - n :].astype(np.float64), DECIMALS).tolist()
        return {
            "model": "lstm",
            "model_version": loaded.version,
            "user_id": None,
            "predictions": [{"item_id": i, "rating": s} for i, s in zip(items, stars, strict=True)],
        }

    def recommend(self, user_id: int, model: str, k: int) -> dict[str, Any]:
        """rank_all and score_all, seen items masked, top-k (ties to the lower index) with titles."""
        r = self.registry
        loaded = r.models[model]
        user = r.user_index(user_id)
        with torch.inference_mode():
            index = torch.tensor([user], dtype=torch.int64)
            scores, stars = loaded.module.rank_all(index).numpy(), loaded.module.score_all(index).numpy()
        scores[0] = -np.inf
        seen, _ = r.history(user)
        scores[seen] = -np.inf
        total = len(scores) - 1 - len(seen)
        top = np.argpartition(-scores, k)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        score_list = np.round(scores[top].astype(np.float64), DECIMALS).tolist()
        star_list = np.round(stars[top].astype(np.float64), DECIMALS).tolist()
        meta = self.meta
        return {
            "user_id": user_id,
            "model": model,
            "model_version": loaded.version,
            "strategy": "personalized",
            "total": total,
            "offset": 0,
            "items": [
                {**meta[i], "score": s, "rating": p, "because": None}
                for i, s, p in zip(top.tolist(), score_list, star_list, strict=True)
            ],
        }

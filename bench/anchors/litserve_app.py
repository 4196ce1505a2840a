"""The peer: LitServe serving the same TorchScript artifacts with the same model work.

    PYTHONPATH=REPO RECSYS_MODELS_DIR=STORE LITSERVE_VENV/bin/python -m bench.anchors.litserve_app --port P

Run with the benchmark's own LitServe environment (`bench.peers`), never the service's: LitServe is not a
dependency of the service. LitServe routes are POST only, so ``/recommend`` takes ``{"user_id", "k",
"model"}`` as a body. LitServe's defaults otherwise (CPU, one inference worker, one API server process): the
shape its quick start serves a model in.
"""

from __future__ import annotations

import argparse
from typing import Any

import litserve as ls

from bench.anchors.work import Work, load_registry


class _Api(ls.LitAPI):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        self.work = Work(load_registry())

    # Unannotated on purpose: LitServe reads the annotation to decide how to parse the body (none = JSON).
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return request

    def encode_response(self, output: Any) -> Any:
        return output


class PredictApi(_Api):
    def __init__(self, model: str) -> None:
        super().__init__(api_path=f"/predict/{model}")
        self.model = model

    def predict(self, x: dict[str, Any]) -> dict[str, Any]:
        return self.work.predict(self.model, x["user_id"], x["item_ids"])


class SequenceApi(_Api):
    def __init__(self) -> None:
        super().__init__(api_path="/predict/lstm")

    def predict(self, x: dict[str, Any]) -> dict[str, Any]:
        return self.work.predict_sequence(x["items"], x.get("ratings") or [])


class RecommendApi(_Api):
    def __init__(self) -> None:
        super().__init__(api_path="/recommend")

    def predict(self, x: dict[str, Any]) -> dict[str, Any]:
        return self.work.recommend(x["user_id"], x.get("model", "mf"), x.get("k", 10))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    apis = [PredictApi("mf"), PredictApi("dense"), SequenceApi(), RecommendApi()]
    server = ls.LitServer(apis, accelerator="cpu", devices=1, workers_per_device=1)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()

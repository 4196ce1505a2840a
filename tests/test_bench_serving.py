"""The serving benchmark's own machinery: anchors that do the service's model work, the profiler's stage
attribution and the report's carry-over of parts not measured. No timing here: speed targets live in the
benchmark, which prints ratios."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from bench import report
from bench.anchors import bare, minimal
from bench.profile import classify
from tests.conftest import SyntheticStore

UVICORN = ["<module> (uvicorn:6)", "Runner.run (asyncio/runners.py:118)", "run_asgi (uvicorn/protocols/http/h.py:1)"]
MIDDLEWARE = [
    *UVICORN,
    "FastAPI.__call__ (fastapi/applications.py:1)",
    "ObservabilityMiddleware.__call__ (app/middleware.py:85)",
]
HANDLER = [*MIDDLEWARE, "solve_dependencies (fastapi/dependencies/utils.py:671)"]


@pytest.mark.parametrize(
    ("stack", "stage"),
    [
        (UVICORN, "server"),
        (MIDDLEWARE, "middleware"),
        ([*MIDDLEWARE, "Logger.info (logging/__init__.py:1)"], "logging"),
        (HANDLER, "routing + params"),
        ([*HANDLER, "validate_python (pydantic/type_adapter.py:1)"], "routing + params"),
        ([*MIDDLEWARE, "recommend_for_user (app/services/recommend.py:61)"], "model call"),
        (
            [*MIDDLEWARE, "_items (app/services/recommend.py:204)", "BaseModel.__init__ (pydantic/main.py:1)"],
            "response building",
        ),
        ([*MIDDLEWARE, "serialize_response (fastapi/routing.py:329)"], "serialisation"),
        (
            [
                *MIDDLEWARE,
                "send_with_headers (app/middleware.py:70)",
                "RequestResponseCycle.send (uvicorn/protocols/http/h.py:524)",
            ],
            "server",
        ),
        (
            [*UVICORN, "create_app.<locals>.app (anchors/bare.py:56)", "Work.recommend (anchors/work.py:75)"],
            "model call",
        ),
    ],
)
def test_profile_samples_go_to_the_innermost_stage(stack: list[str], stage: str) -> None:
    assert classify(stack) == stage


def test_anchors_answer_what_the_service_answers(
    synthetic_store: SyntheticStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The floor and the framework anchor must do the service's work, or their ratios mean nothing.
    monkeypatch.setenv("RECSYS_MODELS_DIR", str(synthetic_store.path))
    user = int(synthetic_store.data.user_raw_ids[0])
    item = synthetic_store.item_raw(1)
    predict = ("/predict/mf", {"user_id": user, "item_ids": [item]})
    sequence = ("/predict/lstm", {"items": [item], "ratings": [4]})
    with TestClient(create_app(Settings(models_dir=synthetic_store.path))) as service:
        expected = {path: service.post(path, json=body).json() for path, body in (predict, sequence)}
        ours = service.get(f"/recommend/{user}?k=3&model=mf").json()
    for anchor in (TestClient(bare.create_app()), TestClient(minimal.create_app())):
        with anchor as client:
            for path, body in (predict, sequence):
                assert client.post(path, json=body).json() == expected[path]
            theirs = client.get(f"/recommend/{user}?k=3&model=mf").json()
            assert theirs.keys() == ours.keys() and len(theirs["items"]) == 3
            assert theirs["items"][0].keys() == ours["items"][0].keys()
            assert theirs["total"] == ours["total"]


def test_a_report_keeps_the_sections_of_parts_it_did_not_measure(tmp_path: Path) -> None:
    (tmp_path / "benchmarks.md").write_text(
        "# Benchmarks\n\n## Training speed\n\nold training\n\n## Serving hot path (issue 17): why\n\nby hand\n\n"
        "## Soak\n\nsoak by hand\n"
    )
    machine = {"python": "3", "torch": "2", "torch_threads": 1, "cpus": 2, "load_average_at_start": [1.0]}
    report.write({"command": "python -m bench", "machine": machine}, tmp_path)
    text = (tmp_path / "benchmarks.md").read_text()
    assert "old training" in text and "by hand" in text and "soak by hand" in text
    assert text.index("## Training speed") < text.index("## Serving hot path") < text.index("## Soak")

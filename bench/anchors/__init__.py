"""Anchor apps the serving benchmark measures beside the service, on the same store and the same load.

- `bench.anchors.bare`: a bare ASGI app, no framework, doing each route's model work: the Python floor.
- `bench.anchors.minimal`: the same work as a minimal FastAPI app: the framework floor.
- `bench.anchors.litserve_app`: LitServe serving the same TorchScript artifact: a peer a user might pick.

All three call `bench.anchors.work`, so the work per request is the same code; only what wraps it differs.
"""

"""The Kubernetes manifests in deploy/, checked without a cluster.

Every manifest is validated (strictly: unknown fields fail) against the Kubernetes OpenAPI schemas that the
`kubernetes-validate` package ships, so this runs offline. The kustomization is checked structurally (its
resources exist, every manifest is listed) and, where `kubectl` is installed (its bundled kustomize), rendered
and the rendered objects validated as well. Then what the schemas cannot know: that the pieces refer to each
other correctly and agree with the image (Dockerfile) and the service's settings.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# The oldest Kubernetes release still in upstream support when this was written, and the newest schemas the
# package ships: the manifests use nothing newer than the first, nothing removed by the second.
KUBERNETES_VERSIONS = ("1.32.0", kubernetes_validate.utils.latest_version())
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "labels", "resources", "images"}
EXPECTED_KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "PersistentVolumeClaim"}


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kustomization() -> dict[str, Any]:
    (doc,) = _load(DEPLOY / "kustomization.yaml")
    return doc


def _resources() -> dict[str, dict[str, Any]]:
    """kind -> the one object of that kind, from the files the kustomization lists."""
    objects: dict[str, dict[str, Any]] = {}
    for name in _kustomization()["resources"]:
        for doc in _load(DEPLOY / name):
            assert doc["kind"] not in objects, f"two {doc['kind']} objects"
            objects[doc["kind"]] = doc
    return objects


def _container() -> dict[str, Any]:
    (container,) = _resources()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def _env() -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in _container()["env"]}


def _dockerfile_api_cmd() -> str:
    """The api stage's CMD shell string (the one the Dockerfile runs with sh -c)."""
    text = (REPO / "Dockerfile").read_text()
    cmd = re.findall(r'^CMD \["sh", "-c", "(.*)"\]$', text, flags=re.M)[-1]
    return cmd.replace('\\"', '"')


def test_kustomization_lists_every_manifest_and_nothing_missing() -> None:
    k = _kustomization()
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and k["kind"] == "Kustomization"
    assert set(k) <= KUSTOMIZATION_FIELDS, f"fields this test does not check: {set(k) - KUSTOMIZATION_FIELDS}"
    listed = set(k["resources"])
    for name in listed:
        assert (DEPLOY / name).is_file(), f"kustomization lists {name}, which does not exist"
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == listed, f"manifests not in the kustomization: {on_disk - listed}"
    assert set(_resources()) == EXPECTED_KINDS
    # The image the Deployment names is the one the kustomization pins.
    assert [i["name"] for i in k["images"]] == [_container()["image"]]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schema(version: str) -> None:
    for kind, obj in _resources().items():
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{kind} is not a valid Kubernetes {version} object: {e.message} at {list(e.path)}")


def test_the_schema_check_catches_a_misspelt_field() -> None:
    """So the test above can fail: a typo inside a probe is rejected, not ignored."""
    deployment = _resources()["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/ready"
    with pytest.raises(kubernetes_validate.ValidationError, match="pth"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_kustomize_renders_valid_objects_with_the_labels() -> None:
    """`kubectl kustomize deploy/` (kustomize bundled in kubectl), where kubectl is installed; the structural
    checks above stand either way."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        # Rendered by hand instead: kustomize's `labels` with includeTemplates adds the pairs to metadata and
        # to the pod template, never to selectors.
        pairs = _kustomization()["labels"][0]["pairs"]
        rendered = list(_resources().values())
        for obj in rendered:
            obj["metadata"].setdefault("labels", {}).update(pairs)
    else:
        out = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        rendered = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
        pairs = _kustomization()["labels"][0]["pairs"]
    assert {o["kind"] for o in rendered} == EXPECTED_KINDS
    for obj in rendered:
        kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)
        assert pairs.items() <= obj["metadata"]["labels"].items(), obj["kind"]
    if kubectl is not None:
        (deployment,) = [o for o in rendered if o["kind"] == "Deployment"]
        assert pairs.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
            ":" + _kustomization()["images"][0]["newTag"]
        )


def test_selectors_and_references_match() -> None:
    r = _resources()
    deployment = r["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert r["Service"]["spec"]["selector"].items() <= pod_labels.items()
    assert r["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    target = r["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    assert r["Service"]["spec"]["ports"][0]["targetPort"] in ports
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["models"]["persistentVolumeClaim"]
    assert claim["claimName"] == r["PersistentVolumeClaim"]["metadata"]["name"] and claim["readOnly"] is True
    assert r["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadOnlyMany"]
    # With maxUnavailable 1 and at least two replicas, a drain never takes the last serving pod.
    assert r["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
    assert r["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_probes_point_at_the_services_health_endpoints() -> None:
    c = _container()
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"  # 200 only with every model loaded and warmed
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    # Loading a large store may take minutes: the startup probe's budget holds liveness off for that long.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert all(c[p]["httpGet"]["port"] == "http" for p in ("readinessProbe", "livenessProbe", "startupProbe"))


def test_the_pod_runs_locked_down_with_the_store_read_only() -> None:
    spec = _resources()["Deployment"]["spec"]["template"]["spec"]
    c = _container()
    assert spec["securityContext"]["runAsNonRoot"] is True
    # The image's recsys user (Dockerfile: useradd --uid 10001).
    assert re.search(r"useradd .*--uid (\d+)", (REPO / "Dockerfile").read_text())[1] == str(  # type: ignore[index]
        spec["securityContext"]["runAsUser"]
    )
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True
    assert Settings(models_dir=Path(_env()["RECSYS_MODELS_DIR"])).models_dir == Path(mounts["models"]["mountPath"])


def test_one_worker_per_pod_with_the_images_command() -> None:
    """docs/scaling.md: the pod is the unit of scaling, so /metrics and /admin/reload cover the whole pod."""
    c = _container()
    env = _env()
    assert env["WEB_CONCURRENCY"] == "1"
    assert c["command"] == ["sh", "-c"]
    ours = shlex.split(c["args"][0])
    image = shlex.split(_dockerfile_api_cmd())
    # The image's CMD with HOST and PORT spelled out: same program, flags and worker variable.
    expected = [{"$HOST": "0.0.0.0", "$PORT": str(c["ports"][0]["containerPort"])}.get(a, a) for a in image]
    assert ours == expected
    # SIGKILL comes after the grace period: it must outlast the preStop sleep plus uvicorn's graceful timeout.
    grace = _resources()["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    timeout = int(ours[ours.index("--timeout-graceful-shutdown") + 1])
    sleep = int(re.search(r"sleep (\d+)", c["lifecycle"]["preStop"]["exec"]["command"][-1])[1])  # type: ignore[index]
    assert grace > timeout + sleep
    # Settings the pod sets are ones the service reads.
    known = {f"RECSYS_{name.upper()}" for name in Settings.model_fields}
    assert {k for k in env if k.startswith("RECSYS_")} | {"RECSYS_ADMIN_API_KEY"} <= known

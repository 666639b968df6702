"""The manifests in deploy/k8s as objects, and the environment a container of theirs starts
with (tests/deploy: the manifests' own tests, and the Prometheus test that runs the service
with the Deployment's environment)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"

# What the Secret holds, by key, in the form the settings expect: what an operator puts there.
PLACEHOLDERS = {
    "database-url": "postgresql+asyncpg://yuekang@db.example.org/yuekang",
    "pii-keys": json.dumps({"k2026": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}),
    "pii-active-key-id": "k2026",
}


def documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return found


def one(kind: str) -> dict[str, Any]:
    matching = [doc for doc in documents() if doc["kind"] == kind]
    assert len(matching) == 1, f"expected one {kind}, found {len(matching)}"
    return matching[0]


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Deployment", "Job"):
        yield kind, one(kind)["spec"]["template"]["spec"]


def containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind, spec in pod_specs():
        for container in spec["containers"]:
            yield kind, container


def api_container() -> dict[str, Any]:
    (container,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def environment(container: dict[str, Any], **secrets: str) -> dict[str, str]:
    """The variables a container starts with, as the kubelet makes them: the ConfigMap's
    (whole or by key), plain values, and the Secret's keys (``secrets``, else a placeholder
    of the right form)."""
    config = {name: str(value) for name, value in one("ConfigMap")["data"].items()}
    made: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] == "yuekang-config"
        made.update(config)
    for entry in container.get("env", []):
        if "value" in entry:
            made[entry["name"]] = entry["value"]
        elif "configMapKeyRef" in entry["valueFrom"]:
            made[entry["name"]] = config[entry["valueFrom"]["configMapKeyRef"]["key"]]
        else:
            key = entry["valueFrom"]["secretKeyRef"]["key"]
            made[entry["name"]] = secrets.get(key) or PLACEHOLDERS.get(key, f"{key}-" + "s" * 40)
    return made

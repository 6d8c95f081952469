"""deploy/kubernetes, checked offline: each overlay renders (kubectl's kustomize), its objects
validate strictly against Kubernetes' schemas (kubernetes-validate) and KEDA's
(tests/kubernetes/validate.mjs), every variable it sets is a setting, the pods stop within
their grace period, and each service scales on the backlog of every topic its group takes."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bus import BusSettings, names
from orderbus import autoscaling
from orderbus.specs import check_service, own_settings_model, service_spec
from services.runtime.settings import SERVICES
from tests.brokers import brokers_required
from tests.unit.test_compose import SETTINGS_ENV

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy/kubernetes"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir())
KEDA_VALIDATOR = ROOT / "tests/kubernetes"
OLDEST_KUBERNETES = "1.30"
"""The oldest release the manifests are for: the preStop `sleep` action is on by default
from 1.30."""


def _tool(name: str, reason: str) -> str:
    found = shutil.which(name)
    if found is None:
        if brokers_required():
            pytest.fail(f"ORDERBUS_REQUIRE_BROKERS=1 but {reason}")
        pytest.skip(reason)
    return found


@functools.cache
def _kustomize(overlay: str) -> str:
    kubectl = _tool("kubectl", "no kubectl (its kustomize renders the overlays)")
    return subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def rendered(overlay: str) -> list[dict[str, Any]]:
    """The overlay's objects, parsed anew for each caller (a test may change them)."""
    return [d for d in yaml.safe_load_all(_kustomize(overlay)) if d]


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_the_overlays_are_what_the_generator_writes() -> None:
    assert autoscaling.main(["--check"]) == 0
    assert sorted(autoscaling.BROKERS) == OVERLAYS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_kubernetes_object_validates_strictly(overlay: str) -> None:
    core = [o for o in rendered(overlay) if not o["apiVersion"].startswith("keda.sh/")]
    assert {o["kind"] for o in core} == {
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    }
    for obj in core:
        # Strict: a misspelt field is an error, not something the API server drops.
        kubernetes_validate.validate(obj, OLDEST_KUBERNETES, strict=True)


def test_the_strict_validation_catches_a_misspelt_field() -> None:
    deployment = of_kind(rendered("redis-streams"), "Deployment")["billing"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, OLDEST_KUBERNETES, strict=True)


def keda_errors(objects: list[dict[str, Any]]) -> str:
    node = _tool("node", "no node (KEDA's schemas are checked with @kubernetes-models/keda)")
    if not (KEDA_VALIDATOR / "node_modules").exists():
        reason = "tests/kubernetes has no node_modules (make test installs them with npm)"
        if brokers_required():
            pytest.fail(f"ORDERBUS_REQUIRE_BROKERS=1 but {reason}")
        pytest.skip(reason)
    checked = subprocess.run(
        [node, "validate.mjs"],
        cwd=KEDA_VALIDATOR,
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode in (0, 1), checked.stderr
    return checked.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_keda_object_validates_against_kedas_schema(overlay: str) -> None:
    keda = [o for o in rendered(overlay) if o["apiVersion"].startswith("keda.sh/")]
    assert keda
    assert keda_errors(keda) == ""


def test_kedas_schema_catches_a_wrong_type() -> None:
    scaled = of_kind(rendered("kafka"), "ScaledObject")["billing"]
    scaled["spec"]["maxReplicaCount"] = "six"
    assert "maxReplicaCount must be integer" in keda_errors([scaled])


def _containers(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: d["spec"]["template"]["spec"]["containers"][0]
        for name, d in of_kind(objects, "Deployment").items()
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_set_is_a_setting_and_the_backend_is_the_overlays(overlay: str) -> None:
    objects = rendered(overlay)
    (config,) = of_kind(objects, "ConfigMap").values()
    assert set(config["data"]) <= SETTINGS_ENV
    assert config["data"]["BUS_BACKEND"] == overlay
    for name, container in _containers(objects).items():
        assert {e["name"] for e in container.get("env", [])} <= SETTINGS_ENV, name
        sources = container["envFrom"]
        assert {"configMapRef": {"name": config["metadata"]["name"]}} in sources
        # Its broker user's BUS_URL and its database URL: from a secret of its own.
        assert {"secretRef": {"name": f"orderbus-{name}"}} in sources


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_the_image_as_non_root_with_probes_and_requests(overlay: str) -> None:
    objects = rendered(overlay)
    deployments = of_kind(objects, "Deployment")
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        port = own_settings_model(check_service(name)).model_fields["port"].default
        assert container["args"] == ["run", name]
        assert container["ports"][0]["containerPort"] == port
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert set(container["resources"]["requests"]) == {"cpu", "memory"}
        advertised = {e["name"]: e.get("valueFrom") for e in container["env"]}
        assert advertised["ORDERBUS_ADVERTISED_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert set(of_kind(objects, "PodDisruptionBudget")) == set(SERVICES)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_covers_prestop_and_the_services_own_shutdown(overlay: str) -> None:
    """Past the grace period the kubelet kills the pod: the service's own deadline (which logs
    what is still pending before it exits) must come first, after the preStop pause."""
    objects = rendered(overlay)
    (config,) = of_kind(objects, "ConfigMap").values()
    shutdown = float(config["data"]["ORDERBUS_SHUTDOWN_TIMEOUT_S"])
    for deployment in of_kind(objects, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        pause = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pause + shutdown + 2 <= pod["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_start_up_may_take_as_long_as_the_services_own_bounds(overlay: str) -> None:
    """The kubelet restarts a pod whose startup probe fails: not before the service's own
    bounds (the broker wait, the subscriptions' start) have run out and it said why."""
    bus = BusSettings()
    for deployment in of_kind(rendered(overlay), "Deployment").values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        probe = container["startupProbe"]
        window = probe["periodSeconds"] * probe["failureThreshold"]
        assert window >= bus.start_wait_s + bus.start_timeout_s + 10
        assert "replicas" not in deployment["spec"], "the ScaledObject owns the count"


SCALER_KEYS: dict[str, tuple[set[str], set[str]]] = {
    # (required, allowed) metadata keys per scaler, from KEDA's scaler pages (2.12 and later):
    # KEDA's CRD types `metadata` as a map of strings, so its schema cannot catch a misspelt key.
    "redis-streams": (
        {"address", "stream", "consumerGroup", "lagCount"},
        {"address", "host", "port", "stream", "consumerGroup", "pendingEntriesCount",
         "streamLength", "lagCount", "activationLagCount", "databaseIndex", "enableTLS",
         "unsafeSsl"},
    ),
    "kafka": (
        {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"},
        {"bootstrapServers", "consumerGroup", "topic", "lagThreshold",
         "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers",
         "excludePersistentLag", "scaleToZeroOnInvalidOffset", "limitToPartitionsWithLag"},
    ),
    "rabbitmq": (
        {"protocol", "queueName", "mode", "value"},
        {"host", "protocol", "queueName", "mode", "value", "activationValue", "vhostName",
         "useRegex", "excludeUnacknowledged"},
    ),
    "nats-jetstream": (
        {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"},
        {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold",
         "activationLagThreshold", "useHttps"},
    ),
    "cpu": ({"value"}, {"value", "containerName"}),
}  # fmt: skip


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_trigger_names_only_settings_its_scaler_has(overlay: str) -> None:
    for obj in of_kind(rendered(overlay), "ScaledObject").values():
        for trigger in obj["spec"]["triggers"]:
            required, allowed = SCALER_KEYS[trigger["type"]]
            keys = set(trigger["metadata"])
            assert required <= keys, (obj["metadata"]["name"], trigger)
            assert keys <= allowed, (obj["metadata"]["name"], keys - allowed)
            assert all(isinstance(v, str) for v in trigger["metadata"].values())


def _trigger_names(backend: str, trigger: dict[str, Any]) -> tuple[str, str]:
    """(topic, group) of one lag trigger, as the backend's scaler names them."""
    metadata = trigger["metadata"]
    if backend == "rabbitmq":
        queue = metadata["queueName"]
        topic, _, group = queue.partition(".")
        assert queue == names.group_queue(topic, group)
        return topic, group
    keys = {
        "redis-streams": ("stream", "consumerGroup"),
        "kafka": ("topic", "consumerGroup"),
        "nats": ("stream", "consumer"),
    }[backend]
    return metadata[keys[0]], metadata[keys[1]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_scales_on_the_backlog_of_every_topic_its_group_takes(
    overlay: str,
) -> None:
    objects = rendered(overlay)
    scaled = of_kind(objects, "ScaledObject")
    assert set(scaled) == set(SERVICES)
    for name in SERVICES:
        obj = scaled[name]
        assert obj["spec"]["scaleTargetRef"]["name"] == name
        lag = [t for t in obj["spec"]["triggers"] if t["type"] != "cpu"]
        taken = {sub.topic for sub in service_spec(name).subscriptions}
        assert {_trigger_names(overlay, t) for t in lag} == {(t, name) for t in taken}
        for trigger in lag:
            ref = trigger.get("authenticationRef")
            if ref is not None:
                assert ref["name"] in of_kind(objects, "TriggerAuthentication")


def test_kafka_replicas_stop_at_the_partition_count() -> None:
    objects = rendered("kafka")
    (config,) = of_kind(objects, "ConfigMap").values()
    partitions = int(config["data"]["BUS_KAFKA_PARTITIONS"])
    assert partitions == BusSettings().kafka_partitions
    for obj in of_kind(objects, "ScaledObject").values():
        assert obj["spec"]["maxReplicaCount"] == partitions


def test_no_secret_value_is_committed() -> None:
    for path in KUBERNETES.rglob("*.yaml"):
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert not [d for d in documents if d.get("kind") == "Secret"], path
        assert "secretGenerator" not in path.read_text(), path


def test_the_keda_validator_is_installed_from_its_lock() -> None:
    assert (KEDA_VALIDATOR / "package-lock.json").exists()
    assert "npm ci --prefix tests/kubernetes" in (ROOT / "Makefile").read_text()

"""`python -m orderbus.autoscaling [--check]`: the Kubernetes overlays, one per backend with a
backlog to scale on, written from the service specs and `bus.names` (or, with `--check`,
compared with the committed files).

Each overlay is `deploy/kubernetes/base` with `BUS_BACKEND` set and a KEDA `ScaledObject` per
service: replicas of a service compete under its group, so more replicas drain a backlog
faster, and KEDA adds them while the group's backlog on any topic it subscribes to is above
the threshold (per replica), and removes them when it is gone. What "backlog" is, per broker:

| backend | KEDA scaler | asks for |
|---|---|---|
| redis-streams | `redis-streams` | the group's lag on the topic's stream (not yet delivered) |
| kafka | `kafka` | the group's lag on the topic; replicas capped at its partitions |
| rabbitmq | `rabbitmq` | messages ready in the group's queue `<topic>.<group>` |
| nats | `nats-jetstream` | the durable consumer's pending messages on the topic's stream |

`memory` runs in one process and `redis-pubsub` keeps no backlog: neither has an overlay. The
order service scales on CPU as well, since it also answers HTTP.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from bus import BusSettings, names
from orderbus.specs import service_spec
from services.runtime.settings import SERVICES, ServiceName

ROOT = Path(__file__).resolve().parents[1]
OVERLAYS = ROOT / "deploy/kubernetes/overlays"
NAMESPACE = "orderbus"

BROKERS = {
    "redis-streams": "redis:6379",
    "kafka": "kafka:9092",
    "rabbitmq": "rabbitmq",  # the scaler's URL is in the secret (it holds a password)
    "nats": "nats:8222",  # the monitoring port: the scaler reads consumer state over HTTP
}
"""Where KEDA finds each broker: a Service of that name in the namespace (change it here for
yours, and run this again)."""
BACKLOG_PER_REPLICA = 20
"""Events waiting per replica before KEDA adds one."""
MAX_REPLICAS = 6
KAFKA_PARTITIONS = BusSettings.model_fields["kafka_partitions"].default
"""The bus creates each topic with this many partitions (`BUS_KAFKA_PARTITIONS`): a group has
at most one reader per partition, so more replicas than this would idle."""
ORDER_CPU_PERCENT = 70
KEDA_SECRET = "orderbus-keda"  # noqa: S105 - the name of a secret, not one
"""The secret KEDA reads the broker's operator credentials from (README: Run on Kubernetes)."""


def _trigger(backend: str, topic: str, group: str) -> dict[str, Any]:
    threshold = str(BACKLOG_PER_REPLICA)
    if backend == "redis-streams":
        return {
            "type": "redis-streams",
            "metadata": {
                "address": BROKERS[backend],
                "stream": topic,
                "consumerGroup": group,
                "lagCount": threshold,
            },
            "authenticationRef": {"name": "orderbus-broker"},
        }
    if backend == "kafka":
        return {
            "type": "kafka",
            "metadata": {
                "bootstrapServers": BROKERS[backend],
                "consumerGroup": group,
                "topic": topic,
                "lagThreshold": threshold,
                "offsetResetPolicy": "earliest",  # a new group reads from the start
            },
        }
    if backend == "rabbitmq":
        return {
            "type": "rabbitmq",
            "metadata": {
                "protocol": "amqp",
                "queueName": names.group_queue(topic, group),
                "mode": "QueueLength",
                "value": threshold,
            },
            "authenticationRef": {"name": "orderbus-broker"},
        }
    if backend == "nats":
        return {
            "type": "nats-jetstream",
            "metadata": {
                "natsServerMonitoringEndpoint": BROKERS[backend],
                "account": "$G",  # the users of deploy/brokers/nats.conf are in the global one
                "stream": topic,
                "consumer": group,
                "lagThreshold": threshold,
            },
        }
    raise ValueError(f"no autoscaling for backend {backend!r}")


TRIGGER_AUTH: dict[str, list[dict[str, str]]] = {
    "redis-streams": [
        {"parameter": "username", "name": KEDA_SECRET, "key": "redis-username"},
        {"parameter": "password", "name": KEDA_SECRET, "key": "redis-password"},
    ],
    "rabbitmq": [{"parameter": "host", "name": KEDA_SECRET, "key": "rabbitmq-url"}],
}
"""The scalers that need credentials, and where they read them."""


def scaled_object(backend: str, service: ServiceName) -> dict[str, Any]:
    spec = service_spec(service)
    triggers = [_trigger(backend, sub.topic, spec.name) for sub in spec.subscriptions]
    if service == "order":
        triggers.append(
            {
                "type": "cpu",
                "metricType": "Utilization",
                "metadata": {"value": str(ORDER_CPU_PERCENT)},
            }
        )
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": service},
        "spec": {
            "scaleTargetRef": {"name": service},
            "minReplicaCount": 1,
            "maxReplicaCount": KAFKA_PARTITIONS if backend == "kafka" else MAX_REPLICAS,
            "pollingInterval": 15,
            "cooldownPeriod": 120,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    # One replica away every minute at most: a lull between bursts is not
                    # a reason to give back all the capacity at once.
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": 120,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                        }
                    }
                }
            },
            "triggers": triggers,
        },
    }


def _yaml(*documents: dict[str, Any]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in documents)


HEADER = "# Generated by `python -m orderbus.autoscaling`: do not edit.\n"


def generated_files() -> dict[Path, str]:
    files = {}
    for backend in BROKERS:
        folder = OVERLAYS / backend
        literals = [f"BUS_BACKEND={backend}"]
        if backend == "kafka":
            literals.append(f"BUS_KAFKA_PARTITIONS={KAFKA_PARTITIONS}")
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": NAMESPACE,
            "resources": ["../../base", "autoscaling.yaml"],
            "configMapGenerator": [{"name": "orderbus", "behavior": "merge", "literals": literals}],
        }
        files[folder / "kustomization.yaml"] = HEADER + _yaml(kustomization)
        documents = [scaled_object(backend, service) for service in SERVICES]
        if backend in TRIGGER_AUTH:
            documents.insert(
                0,
                {
                    "apiVersion": "keda.sh/v1alpha1",
                    "kind": "TriggerAuthentication",
                    "metadata": {"name": "orderbus-broker"},
                    "spec": {"secretTargetRef": TRIGGER_AUTH[backend]},
                },
            )
        files[folder / "autoscaling.yaml"] = HEADER + _yaml(*documents)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orderbus.autoscaling", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_files().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.relative_to(ROOT))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for path in stale:
        print(f"{path} differs from what `python -m orderbus.autoscaling` writes", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())

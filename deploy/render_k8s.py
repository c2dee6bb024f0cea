#!/usr/bin/env python3
"""Kubernetes manifests for the GPU image, rendered from what the image and the service declare.

    python deploy/render_k8s.py [--image REGISTRY/dsocr:TAG] [--out deploy]

Nothing here restates a port, a path or a default; each comes from where it is defined:
  Dockerfile.triton                         install directory, HF cache path
  src/dsocr/serve.py                        Triton ports and flags (shared memory, model control),
                                            model-load and stop timeouts
  src/dsocr/envs.py                         frontend port
  model_repository/vllm_model/1/engine.json model, GPU memory share, context, GPUs per engine
Deployment choices alone (replicas, resources, the autoscaling target) are in
`Deployment`. The rendered files are checked in; a unit test fails when they
differ from a fresh render.

Shape: Triton pods (one GPU each) in a StatefulSet behind a headless Service,
so that each pod has a stable name (dsocr-triton-0.dsocr-triton) and its own
HF-cache volume that survives scaling down and up; the frontend, stateless, in
a Deployment in front, given every Triton pod's gRPC address; an autoscaler on
the requests waiting in the Triton pods. Apart, in batch/ (applied when a corpus is
to be OCR'd, not with the service): an Indexed Job of `dsocr ocr` shards against
the frontend, over a shared volume.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from dsocr import envs, paths, serve
from dsocr.engine_config import ENV_OVERRIDES, engine_json
from dsocr.triton import contract

REPO_ROOT = paths.REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile.triton"
OUT_DIR = REPO_ROOT / "deploy"
HEADER = (
    "# Rendered by deploy/render_k8s.py from Dockerfile.triton, src/dsocr/serve.py,\n"
    "# src/dsocr/envs.py and engine.json. Edit those (or the script) and render again.\n"
)

# Requests waiting in a Triton pod: Triton's scheduler queues (preprocess
# instances busy) and vLLM's own queue (its running batch is full). The vLLM
# model is decoupled, so Triton hands requests to vLLM at once and only vLLM's
# gauge sees that backlog; a pod without it still reports Triton's.
WAITING_SERIES = ("nv_inference_pending_request_count", "vllm:num_requests_waiting")
WAITING_METRIC = "dsocr_requests_waiting"
# Where the frontend takes its Bearer key from, when the Secret exists.
API_KEY_SECRET = ("dsocr-api-key", "api-key")
# Where a batch shard's pod sees the corpus and writes its results (the shared volume's subpaths).
BATCH_CORPUS, BATCH_RESULTS = "/corpus", "/results"


@dataclass(frozen=True)
class Deployment:
    image: str
    name: str = "dsocr"
    triton_min_replicas: int = 1
    triton_max_replicas: int = 4
    frontend_replicas: int = 2
    # Average waiting requests per Triton pod above which a pod is added. vLLM
    # already runs up to max_num_seqs (engine.json) requests at once.
    waiting_per_pod: int = 8
    hf_cache_size: str = "50Gi"
    # /dev/shm of a Triton pod: the Python-backend regions (serve.py) and
    # their growth; counts against the pod's memory limit.
    shm_size: str = "1Gi"
    triton_requests: tuple[tuple[str, str], ...] = (("cpu", "4"), ("memory", "24Gi"))
    triton_memory_limit: str = "48Gi"
    frontend_requests: tuple[tuple[str, str], ...] = (("cpu", "1"), ("memory", "1Gi"))
    frontend_memory_limit: str = "4Gi"
    # `dsocr ocr` over a corpus: this many shards at once, each a client of the frontend (no GPU).
    batch_shards: int = 4
    batch_retries_per_shard: int = 3
    batch_volume_size: str = "100Gi"
    batch_requests: tuple[tuple[str, str], ...] = (("cpu", "1"), ("memory", "2Gi"))
    batch_memory_limit: str = "4Gi"


@dataclass(frozen=True)
class Sources:
    """What the manifests take from the image, the serve command and the engine file."""

    workdir: str
    hf_home: str
    frontend_port: int
    http_port: int
    grpc_port: int
    metrics_port: int
    triton_flags: tuple[str, ...]
    ready_timeout_s: float
    stop_grace_s: float
    engine: dict


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for keyword, arguments in instructions:
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def dockerfile_last(instructions: list[tuple[str, str]], keyword: str) -> str:
    return [arguments for kw, arguments in instructions if kw == keyword][-1]


def read_sources() -> Sources:
    instructions = dockerfile_instructions()
    defaults = serve.parse_args(["--device=gpu"])
    return Sources(
        workdir=dockerfile_last(instructions, "WORKDIR"),
        hf_home=dockerfile_env(instructions)["HF_HOME"],
        frontend_port=int(envs.DECLARED["DSOCR_PORT"].default),
        http_port=defaults.triton_http_port,
        grpc_port=defaults.triton_grpc_port,
        metrics_port=defaults.triton_metrics_port,
        triton_flags=tuple(serve.TRITON_FLAGS),
        ready_timeout_s=defaults.ready_timeout_s,
        stop_grace_s=defaults.stop_grace_s,
        engine={k: v for k, v in json.loads(engine_json().read_text()).items() if k != "on_cpu"},
    )


def default_image() -> str:
    return f"dsocr:{importlib.metadata.version('dsocr')}"


# --- building blocks ---------------------------------------------------------


def labels(d: Deployment, component: str) -> dict:
    return {"app.kubernetes.io/name": d.name, "app.kubernetes.io/component": component}


def env_list(values: dict[str, str]) -> list[dict]:
    return [{"name": name, "value": str(value)} for name, value in values.items()]


def http_probe(path: str, port: str, period_s: int, failures: int) -> dict:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period_s,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def triton_name(d: Deployment) -> str:
    return f"{d.name}-triton"


def engine_env(s: Sources) -> dict[str, str]:
    """The engine's file defaults, written out so that each is one edit away."""
    return {variable: s.engine[key] for variable, (key, _parse) in ENV_OVERRIDES.items()}


def triton_grpc_urls(d: Deployment, s: Sources) -> str:
    """Every Triton pod the autoscaler may create, by its stable DNS name. A name
    resolves only while its pod exists and is ready (headless Service)."""
    service = triton_name(d)
    return ",".join(f"{service}-{i}.{service}:{s.grpc_port}" for i in range(d.triton_max_replicas))


# --- manifests ---------------------------------------------------------------


def triton_statefulset(d: Deployment, s: Sources) -> dict:
    name = triton_name(d)
    gpus = int(engine_env(s)["TENSOR_PARALLEL_SIZE"])
    command = [
        "tritonserver",
        f"--model-repository={PurePosixPath(s.workdir) / paths.MODEL_REPOSITORY.name}",
        f"--http-port={s.http_port}",
        f"--grpc-port={s.grpc_port}",
        f"--metrics-port={s.metrics_port}",
        *s.triton_flags,
    ]
    container = {
        "name": "triton",
        "image": d.image,
        # `args` replaces the image's CMD only: its ENTRYPOINT (dumb-init and
        # NVIDIA's CUDA set-up) still runs first.
        "args": command,
        "env": env_list(engine_env(s)),
        "ports": [
            {"name": "http", "containerPort": s.http_port},
            {"name": "grpc", "containerPort": s.grpc_port},
            {"name": "metrics", "containerPort": s.metrics_port},
        ],
        "resources": {
            "requests": dict(d.triton_requests),
            "limits": {"memory": d.triton_memory_limit, "nvidia.com/gpu": gpus},
        },
        # Triton opens its ports once the models are loaded (download included).
        "startupProbe": http_probe("/v2/health/live", "http", 10, math.ceil(s.ready_timeout_s / 10)),
        # Ready: the model, not only the server (a part that died takes the pod
        # out of service while the serve command heals it in place). Live: the
        # server; the serve command exits, and the pod restarts, once a part
        # keeps dying (dsocr.serve.Healer), so a heal is never cut short here.
        "readinessProbe": http_probe(contract.ready_path(), "http", 5, 3),
        "livenessProbe": http_probe("/v2/health/live", "http", 10, 3),
        "volumeMounts": [
            {"name": "hf-cache", "mountPath": s.hf_home},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    pod = {
        "metadata": {
            "labels": labels(d, "triton"),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(s.metrics_port),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "terminationGracePeriodSeconds": int(s.stop_grace_s),
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [container],
            "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": d.shm_size}}],
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels(d, "triton")},
        "spec": {
            "serviceName": name,
            # Pods start and stop independently: no order among replicas.
            "podManagementPolicy": "Parallel",
            # No `replicas`: the autoscaler owns it, and applying the file again
            # must not scale back to one pod.
            "selector": {"matchLabels": labels(d, "triton")},
            "template": pod,
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "hf-cache"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": d.hf_cache_size}},
                    },
                }
            ],
        },
    }


def triton_service(d: Deployment, s: Sources) -> dict:
    # Headless: one DNS name per ready pod. gRPC keeps one connection per
    # address, so a load-balanced virtual IP would pin a frontend to one pod.
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": triton_name(d), "labels": labels(d, "triton")},
        "spec": {
            "clusterIP": "None",
            "selector": labels(d, "triton"),
            "ports": [
                {"name": "http", "port": s.http_port, "targetPort": "http"},
                {"name": "grpc", "port": s.grpc_port, "targetPort": "grpc"},
                {"name": "metrics", "port": s.metrics_port, "targetPort": "metrics"},
            ],
        },
    }


def frontend_deployment(d: Deployment, s: Sources) -> dict:
    secret, key = API_KEY_SECRET
    env = env_list(
        {
            # The model names the API answers to follow what Triton serves.
            "MODEL": engine_env(s)["MODEL"],
            "DSOCR_TRITON_GRPC_URL": triton_grpc_urls(d, s),
        }
    )
    env.append(
        {
            "name": "DSOCR_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}},
        }
    )
    container = {
        "name": "frontend",
        "image": d.image,
        "args": ["python3", "-m", "openai_frontend"],
        "env": env,
        "ports": [{"name": "http", "containerPort": s.frontend_port}],
        "resources": {
            "requests": dict(d.frontend_requests),
            "limits": {"memory": d.frontend_memory_limit},
        },
        "readinessProbe": http_probe("/health/ready", "http", 5, 3),
        "livenessProbe": http_probe("/health", "http", 10, 3),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": d.name, "labels": labels(d, "frontend")},
        "spec": {
            "replicas": d.frontend_replicas,
            "selector": {"matchLabels": labels(d, "frontend")},
            "template": {
                "metadata": {"labels": labels(d, "frontend")},
                "spec": {
                    # Streams in flight get time to finish.
                    "terminationGracePeriodSeconds": int(s.stop_grace_s),
                    "containers": [container],
                },
            },
        },
    }


def frontend_service(d: Deployment, s: Sources) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": d.name, "labels": labels(d, "frontend")},
        "spec": {
            "selector": labels(d, "frontend"),
            "ports": [{"name": "http", "port": s.frontend_port, "targetPort": "http"}],
        },
    }


def autoscaler(d: Deployment, s: Sources) -> dict:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": triton_name(d), "labels": labels(d, "triton")},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": triton_name(d)},
            "minReplicas": d.triton_min_replicas,
            "maxReplicas": d.triton_max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": WAITING_METRIC},
                        "target": {"type": "AverageValue", "averageValue": str(d.waiting_per_pod)},
                    },
                }
            ],
            # A new pod needs minutes to load the model: add one at a time,
            # and keep capacity through short lulls.
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 900,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
                },
            },
        },
    }


def adapter_values(d: Deployment, s: Sources) -> dict:
    """Values for the prometheus-community/prometheus-adapter chart: the rule
    that turns Triton's metrics into the autoscaler's per-pod metric."""
    series = "|".join(WAITING_SERIES)
    return {
        "rules": {
            "custom": [
                {
                    "seriesQuery": f'{WAITING_SERIES[0]}{{namespace!="",pod!=""}}',
                    "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
                    "name": {"matches": f"^{WAITING_SERIES[0]}$", "as": WAITING_METRIC},
                    "metricsQuery": f'sum by (<<.GroupBy>>) ({{__name__=~"{series}",<<.LabelMatchers>>}})',
                }
            ],
        },
    }


def pod_monitor(d: Deployment, s: Sources) -> dict:
    """For a Prometheus run by the Prometheus Operator (others read the pods'
    prometheus.io/* annotations)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": triton_name(d), "labels": labels(d, "triton")},
        "spec": {
            "selector": {"matchLabels": labels(d, "triton")},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    }


def batch_volume_name(d: Deployment) -> str:
    return f"{d.name}-batch"


def batch_volume(d: Deployment, s: Sources) -> dict:
    """The corpus (corpus/) and the shards' outputs (results/), shared by every shard's pod: ReadWriteMany."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": batch_volume_name(d), "labels": labels(d, "batch")},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": d.batch_volume_size}}},
    }


def batch_job(d: Deployment, s: Sources) -> dict:
    """`dsocr ocr` in N shards against the frontend's Service, shard I writing results/shard-I/.

    A pod that fails (a document that failed, a node lost) is started again up to
    batch_retries_per_shard times: the rerun skips what its shard has done and retries what failed.
    """
    index = "$(JOB_COMPLETION_INDEX)"  # Kubernetes expands it in args from the container's env
    secret, key = API_KEY_SECRET
    command = [
        "dsocr", "ocr", BATCH_CORPUS, "-o", f"{BATCH_RESULTS}/shard-{index}",
        "--shard", f"{index}/{d.batch_shards}", "--url", f"http://{d.name}:{s.frontend_port}",
        "--progress", "lines", "--progress-interval", "30",
    ]  # fmt: skip
    container = {
        "name": "ocr",
        "image": d.image,
        "args": command,  # the image's ENTRYPOINT still runs first, as for the service's pods
        "env": [
            {
                "name": "JOB_COMPLETION_INDEX",
                "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
                },
            },
            {"name": "DSOCR_API_KEY", "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}},
        ],
        "resources": {"requests": dict(d.batch_requests), "limits": {"memory": d.batch_memory_limit}},
        "volumeMounts": [
            {"name": "batch", "mountPath": BATCH_CORPUS, "subPath": "corpus", "readOnly": True},
            {"name": "batch", "mountPath": BATCH_RESULTS, "subPath": "results"},
        ],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{d.name}-ocr", "labels": labels(d, "batch")},
        "spec": {
            "completionMode": "Indexed",
            "completions": d.batch_shards,
            "parallelism": d.batch_shards,
            # Each shard its own retries: one shard's bad luck does not use up the others'.
            "backoffLimitPerIndex": d.batch_retries_per_shard,
            "template": {
                "metadata": {"labels": labels(d, "batch")},
                "spec": {
                    "restartPolicy": "Never",
                    # Ctrl-C's path: in-flight pages cancelled on the service, nothing half-written.
                    "terminationGracePeriodSeconds": 60,
                    "containers": [container],
                    "volumes": [{"name": "batch", "persistentVolumeClaim": {"claimName": batch_volume_name(d)}}],
                },
            },
        },
    }


FILES = {
    "k8s/triton.yaml": (triton_statefulset, triton_service),
    "k8s/frontend.yaml": (frontend_deployment, frontend_service),
    "k8s/autoscaler.yaml": (autoscaler,),
    "monitoring/prometheus-adapter-values.yaml": (adapter_values,),
    "monitoring/podmonitor.yaml": (pod_monitor,),
    # Not in k8s/: `kubectl apply -f deploy/k8s/` deploys the service and must not start a batch.
    "batch/volume.yaml": (batch_volume,),
    "batch/ocr-job.yaml": (batch_job,),
}


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):  # repeated label maps stay written out
        return True


def to_yaml(documents: list[dict]) -> str:
    return HEADER + "---\n".join(
        yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000) for doc in documents
    )


def render(d: Deployment, s: Sources | None = None) -> dict[str, str]:
    """Relative path under deploy/ -> file text."""
    s = s or read_sources()
    return {path: to_yaml([build(d, s) for build in builders]) for path, builders in FILES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default=default_image(), help="image the pods run (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for k8s/, monitoring/ and batch/")
    args = parser.parse_args(argv)
    for relative, text in render(Deployment(image=args.image)).items():
        target = args.out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Kubernetes manifests: checked in as rendered, valid against the
Kubernetes schemas (offline), and consistent with the image and the service."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import yaml

from deploy import render_k8s
from dsocr import envs, serve

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


RENDERED = render_k8s.render(render_k8s.Deployment(image=render_k8s.default_image()))


def documents(relative: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / relative).read_text()) if doc]


def manifests() -> list[dict]:
    return [doc for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for doc in documents(path.relative_to(DEPLOY))]


def by_kind(kind: str) -> dict:
    (found,) = [doc for doc in manifests() if doc["kind"] == kind]
    return found


def container(workload: dict) -> dict:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity).groups()
    return int(number) * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}[unit]


def test_checked_in_files_equal_a_fresh_render():
    on_disk = {
        str(path.relative_to(DEPLOY)): path.read_text()
        for folder in ("k8s", "monitoring", "batch")
        for path in (DEPLOY / folder).glob("*.yaml")
    }
    assert on_disk == RENDERED, "run: python deploy/render_k8s.py"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("kubernetes_version", ["1.30", "1.37"])
def test_manifests_validate_against_the_kubernetes_schemas_offline(kubernetes_version, no_network):
    import kubernetes_validate  # requirements/dev-tools.txt, installed by scripts/setup.sh

    resources = manifests()
    assert {doc["kind"] for doc in resources} == {"StatefulSet", "Service", "Deployment", "HorizontalPodAutoscaler"}
    for resource in resources:
        # strict: an unknown (misspelt) field fails too
        kubernetes_validate.validate(resource, kubernetes_version, strict=True)


def test_triton_pods_take_one_gpu_and_keep_the_image_entrypoint():
    statefulset = by_kind("StatefulSet")
    triton = container(statefulset)
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "replicas" not in statefulset["spec"]  # the autoscaler owns it
    for workload in (statefulset, by_kind("Deployment")):
        assert "command" not in container(workload)  # would skip dumb-init and NVIDIA's CUDA set-up
    assert triton["args"][0] == "tritonserver"
    assert set(serve.TRITON_FLAGS) <= set(triton["args"])


def test_triton_health_ports_and_volumes():
    statefulset = by_kind("StatefulSet")
    triton = container(statefulset)
    defaults = serve.parse_args(["--device=gpu"])
    ports = {p["name"]: p["containerPort"] for p in triton["ports"]}
    assert ports == {
        "http": defaults.triton_http_port,
        "grpc": defaults.triton_grpc_port,
        "metrics": defaults.triton_metrics_port,
    }
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/models/deepseek_ocr/ready", "port": "http"}
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}  # heals are not cut short
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= defaults.ready_timeout_s

    mounts = {m["name"]: m["mountPath"] for m in triton["volumeMounts"]}
    hf_home = render_k8s.dockerfile_env(render_k8s.dockerfile_instructions())["HF_HOME"]
    assert mounts == {"hf-cache": hf_home, "dshm": "/dev/shm"}
    (shm,) = statefulset["spec"]["template"]["spec"]["volumes"]
    assert shm["emptyDir"]["medium"] == "Memory"
    assert mebibytes(shm["emptyDir"]["sizeLimit"]) >= 512
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "hf-cache"


def test_frontend_reaches_every_triton_pod_by_its_stable_name():
    statefulset, frontend = by_kind("StatefulSet"), container(by_kind("Deployment"))
    assert frontend["args"] == ["python3", "-m", "openai_frontend"]
    assert frontend["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert frontend["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert frontend["ports"] == [{"name": "http", "containerPort": int(envs.DECLARED["DSOCR_PORT"].default)}]

    env = {e["name"]: e.get("value") for e in frontend["env"]}
    name, service = statefulset["metadata"]["name"], statefulset["spec"]["serviceName"]
    grpc = serve.parse_args(["--device=gpu"]).triton_grpc_port
    max_replicas = by_kind("HorizontalPodAutoscaler")["spec"]["maxReplicas"]
    assert env["DSOCR_TRITON_GRPC_URL"].split(",") == [f"{name}-{i}.{service}:{grpc}" for i in range(max_replicas)]
    assert env["MODEL"] == {e["name"]: e["value"] for e in container(statefulset)["env"]}["MODEL"]


def test_triton_service_is_headless():
    (triton_service,) = [doc for doc in documents("k8s/triton.yaml") if doc["kind"] == "Service"]
    assert triton_service["spec"]["clusterIP"] == "None"
    assert triton_service["metadata"]["name"] == by_kind("StatefulSet")["spec"]["serviceName"]


def test_every_plain_env_value_is_a_declared_variable():
    for workload in (by_kind("StatefulSet"), by_kind("Deployment")):
        for var in container(workload)["env"]:
            if "value" in var:  # secret references carry no default to declare
                assert var["name"] in envs.DECLARED, var["name"]


def test_autoscaler_metric_is_the_adapter_rule_on_tritons_metrics():
    hpa = by_kind("HorizontalPodAutoscaler")["spec"]
    statefulset = by_kind("StatefulSet")
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": statefulset["metadata"]["name"],
    }
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods"
    (rule,) = documents("monitoring/prometheus-adapter-values.yaml")[0]["rules"]["custom"]
    assert rule["name"]["as"] == metric["pods"]["metric"]["name"]
    assert rule["seriesQuery"].startswith("nv_inference_pending_request_count{")
    assert "<<.LabelMatchers>>" in rule["metricsQuery"] and "<<.GroupBy>>" in rule["metricsQuery"]
    (monitor,) = documents("monitoring/podmonitor.yaml")
    assert monitor["spec"]["selector"]["matchLabels"] == statefulset["spec"]["selector"]["matchLabels"]
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


# --- the batch Job: `dsocr ocr` in shards ----------------------------------------------------------


def batch_documents() -> list[dict]:
    return [doc for path in sorted((DEPLOY / "batch").glob("*.yaml")) for doc in documents(path.relative_to(DEPLOY))]


@pytest.mark.parametrize("kubernetes_version", ["1.30", "1.37"])
def test_the_batch_manifests_validate_against_the_kubernetes_schemas_offline(kubernetes_version, no_network):
    import kubernetes_validate

    resources = batch_documents()
    assert sorted(doc["kind"] for doc in resources) == ["Job", "PersistentVolumeClaim"]
    for resource in resources:
        kubernetes_validate.validate(resource, kubernetes_version, strict=True)


def test_the_batch_job_runs_one_shard_per_index_against_the_frontend_service():
    (job,) = [doc for doc in batch_documents() if doc["kind"] == "Job"]
    (claim,) = [doc for doc in batch_documents() if doc["kind"] == "PersistentVolumeClaim"]
    spec = job["spec"]
    shards = spec["completions"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == shards > 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # backoffLimitPerIndex's requirement
    ocr = container(job)
    assert "command" not in ocr  # the image's entrypoint runs first
    args = ocr["args"]
    assert args[:3] == ["dsocr", "ocr", "/corpus"]
    index = "$(JOB_COMPLETION_INDEX)"
    assert args[args.index("--shard") + 1] == f"{index}/{shards}"
    assert args[args.index("-o") + 1] == f"/results/shard-{index}"  # each shard its own output prefix
    frontend_service = next(doc for doc in documents("k8s/frontend.yaml") if doc["kind"] == "Service")
    port = frontend_service["spec"]["ports"][0]["port"]
    assert args[args.index("--url") + 1] == f"http://{frontend_service['metadata']['name']}:{port}"
    # $(VAR) in args expands only from the container's own env.
    env = {e["name"]: e["valueFrom"] for e in ocr["env"]}
    assert env["JOB_COMPLETION_INDEX"]["fieldRef"]["fieldPath"].endswith("['batch.kubernetes.io/job-completion-index']")
    assert env["DSOCR_API_KEY"] == container(by_kind("Deployment"))["env"][-1]["valueFrom"]  # the frontend's Secret
    mounts = {m["mountPath"]: m for m in ocr["volumeMounts"]}
    assert mounts["/corpus"]["readOnly"] and mounts["/corpus"]["subPath"] == "corpus"
    assert mounts["/results"]["subPath"] == "results"
    assert pod["volumes"] == [{"name": "batch", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every shard's pod mounts it, on any node
    assert "nvidia.com/gpu" not in ocr["resources"]["limits"]  # a client: the GPUs are the service's


def test_the_shard_arguments_are_what_dsocr_ocr_accepts():
    from dsocr.cli import parser

    (job,) = [doc for doc in batch_documents() if doc["kind"] == "Job"]
    args = [arg.replace("$(JOB_COMPLETION_INDEX)", "3") for arg in container(job)["args"]]
    parsed = parser().parse_args(args[1:])
    assert (parsed.shard.index, parsed.shard.count) == (3, job["spec"]["completions"])
    assert parsed.output_dir == Path("/results/shard-3") and parsed.url == "http://dsocr:8080"

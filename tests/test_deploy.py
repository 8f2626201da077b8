"""The shipped deployment files: NGINX config valid (nginx -t), Prometheus rules and config
valid (promtool, where installed), compose, Kubernetes and Grafana files parsed, and their
images, ports, services and variables cross-checked against each other and the server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _env_names() -> set[str]:
    """Every IQRAH_* variable the server reads (its settings, the cache address)."""
    names = set()
    for path in (ROOT / "src" / "iqrah").rglob("*.py"):
        names |= set(re.findall(r'"(IQRAH_[A-Z_]+)"', path.read_text(encoding="utf-8")))
    return names


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _k8s() -> list[dict]:
    return [doc for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_nginx_accepts_the_shipped_config(tmp_path):
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if nginx is None:
        pytest.skip("nginx is not installed (.ci/run installs it)")
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    # the replicas' names resolve only inside compose: the test points them at loopback
    conf = conf.replace("iqrah-1:8000", "127.0.0.1:18001").replace("iqrah-2:8000", "127.0.0.1:18002")
    conf = conf.replace("worker_processes auto;", f"worker_processes 1;\npid {tmp_path}/nginx.pid;\n"
                        f"error_log {tmp_path}/error.log;")
    (tmp_path / "nginx.conf").write_text(conf)
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


@pytest.mark.parametrize("args", [["check", "config", "prometheus/prometheus.yml"],
                                  ["check", "rules", "prometheus/alerts.yml"]])
def test_promtool_accepts_config_and_rules(args, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    if args[1] == "config":  # rule_files points into the container: check a copy beside the rules
        conf = (DEPLOY / args[2]).read_text().replace("/etc/prometheus/alerts.yml", str(DEPLOY / "prometheus" / "alerts.yml"))
        (tmp_path / "prometheus.yml").write_text(conf)
        args = [*args[:2], str(tmp_path / "prometheus.yml")]
    result = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_replicas_nginx_and_prometheus_agree():
    compose = _compose()["services"]
    replicas = sorted(s for s in compose if s.startswith("iqrah-"))
    assert len(replicas) >= 2
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    for upstream in re.findall(r"upstream (\w+) \{(.*?)\}", nginx, re.S):
        assert sorted(re.findall(r"server ([\w-]+):8000", upstream[1])) == replicas, upstream[0]
    assert "least_conn" in nginx and "consistent" in nginx and "$http_upgrade" in nginx
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["global"]["scrape_interval"] == "15s"
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert sorted(t.split(":")[0] for t in targets) == replicas
    for name in replicas:
        service = compose[name]
        assert service["image"] == "iqrah:cpu" and service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["environment"]["IQRAH_REDIS_URL"].startswith("redis://redis:")
    assert "allkeys-lru" in compose["redis"]["command"]


def test_every_variable_is_one_the_server_reads():
    known = _env_names() | {"FORWARDED_ALLOW_IPS"}  # uvicorn's own
    used = set(_compose()["services"]["iqrah-1"]["environment"])
    for doc in _k8s():
        if doc["kind"] == "ConfigMap":
            used |= set(doc["data"])
    assert used and used <= known, used - known


def test_images_ports_and_probes():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "EXPOSE 8000" in dockerfile and '"--port", "8000"' in dockerfile and "USER iqrah" in dockerfile
    assert "torch==" not in dockerfile and "[muaalem" not in dockerfile  # the runtime needs no torch
    gpu = (DEPLOY / "Dockerfile.gpu").read_text()
    assert "onnxruntime-gpu" in gpu and "USER iqrah" in gpu
    docs = {d["kind"]: d for d in _k8s() if d["metadata"]["name"] == "iqrah"}
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == _compose()["services"]["iqrah-1"]["image"]
    assert container["ports"][0]["containerPort"] == 8000
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 10)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert hpa["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 300
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600


def test_dashboard_and_alerts_use_metrics_the_server_exports():
    source = (ROOT / "src" / "iqrah" / "server" / "metrics.py").read_text()
    exported = set(re.findall(r'"(iqrah_[a-z_]+)"', source))
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "iqrah.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs += [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for e in exprs for m in re.findall(r"iqrah_[a-z_]+", e)}
    assert used and used <= exported, used - exported
    names = {r["alert"] for g in alerts["groups"] for r in g["rules"]}
    assert {"IqrahLiveLatencyHigh", "IqrahErrorRateHigh", "IqrahRefusingStreams", "IqrahReplicaDown"} <= names

"""The deployment files: Kubernetes manifests validated offline against the API schemas
(kubernetes-validate), compose.yaml's services and healthchecks, and deploy/nginx.conf run by a real
nginx in front of two small HTTP backends. Every SEQ2SEQ_* variable they set names a documented flag."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import kubernetes_validate.utils as kv
import pytest
import yaml
from redis_fixture import free_port

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifests() -> dict[str, dict]:
    """Every resource by "kind/name"."""
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found |= {f"{d['kind']}/{d['metadata']['name']}": d for d in load_all(path)}
    return found


def documented_variables() -> set[str]:
    """The SEQ2SEQ_* variables that docs/deployment.md lists for the server's flags."""
    return set(re.findall(r"`(SEQ2SEQ_[A-Z0-9_]+)`", (ROOT / "docs" / "deployment.md").read_text()))


@pytest.mark.parametrize("version", ["1.29.0", kv.latest_version()])
def test_manifests_validate_offline(version: str) -> None:
    resources = manifests()
    assert set(resources) == {
        "Deployment/seq2seq", "Service/seq2seq", "HorizontalPodAutoscaler/seq2seq", "PodDisruptionBudget/seq2seq",
        "PersistentVolumeClaim/seq2seq-models", "Secret/seq2seq-metrics",
        "Deployment/seq2seq-redis", "Service/seq2seq-redis", "PersistentVolumeClaim/seq2seq-redis",
    }  # fmt: skip
    for resource in resources.values():
        kv.validate(resource, version, strict=True)  # raises on an unknown field or a wrong type
    bad = json.loads(json.dumps(resources["Deployment/seq2seq"]))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kv.ValidationError, match="httpGett"):
        kv.validate(bad, version, strict=True)
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_manifests_fit_together() -> None:
    r = manifests()
    deploy = r["Deployment/seq2seq"]
    pod = deploy["spec"]["template"]
    labels = pod["metadata"]["labels"]
    (container,) = pod["spec"]["containers"]
    assert deploy["spec"]["replicas"] >= 2 and deploy["spec"]["selector"]["matchLabels"] == labels
    assert r["Service/seq2seq"]["spec"]["selector"] == labels
    assert r["PodDisruptionBudget/seq2seq"]["spec"]["selector"]["matchLabels"] == labels
    assert r["HorizontalPodAutoscaler/seq2seq"]["spec"]["scaleTargetRef"]["name"] == "seq2seq"
    probes = {p: container[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes == {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/health"}
    start = container["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] >= 120  # room for the models to load
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep" and int(pre_stop[1]) + 30 < pod["spec"]["terminationGracePeriodSeconds"]
    env = {e["name"]: e for e in container["env"]}
    secret = env["SEQ2SEQ_METRICS_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert secret["key"] in r[f"Secret/{secret['name']}"]["stringData"]
    redis_host = re.match(r"redis://([^:/]+):(\d+)/\d+$", env["SEQ2SEQ_SHARED_STORAGE"]["value"])
    assert redis_host and f"Service/{redis_host[1]}" in r
    assert set(env) <= documented_variables(), set(env) - documented_variables()
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert all(f"PersistentVolumeClaim/{c}" in r for c in claims)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] and env["SEQ2SEQ_CHECKPOINT"]["value"] == "/models"


def test_compose_services_and_healthchecks() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"seq2seq-1", "seq2seq-2", "redis", "nginx"} <= set(services)
    for name in ("seq2seq-1", "seq2seq-2", "redis", "nginx"):
        check = services[name]["healthcheck"]
        assert check["test"][0] == "CMD" and check["interval"], name
    replica = services["seq2seq-1"]
    env = replica["environment"]
    assert services["seq2seq-2"] == replica  # one anchor, two replicas
    assert env["SEQ2SEQ_API_KEYS"] == "true" and env["SEQ2SEQ_SHARED_STORAGE"] == "redis://redis:6379/0"
    assert "/health" in " ".join(replica["healthcheck"]["test"])
    assert "./models:/models:ro" in replica["volumes"]
    nginx_ip = services["nginx"]["networks"]["default"]["ipv4_address"]
    assert env["SEQ2SEQ_FORWARDED_ALLOW_IPS"] == f"{nginx_ip}/32"
    assert "--appendonly" in services["redis"]["command"]  # the keys survive a restart
    assert set(env) <= documented_variables(), set(env) - documented_variables()
    upstream = re.findall(r"^\s*server (\S+):8000", (ROOT / "deploy" / "nginx.conf").read_text(), re.M)
    assert upstream == ["seq2seq-1", "seq2seq-2"]


def test_containerfile_variables_are_documented() -> None:
    for name in ("Containerfile", "Containerfile.cuda"):
        text = (ROOT / name).read_text()
        assert set(re.findall(r"\b(SEQ2SEQ_[A-Z_]+)=", text)) <= documented_variables()
        assert 'ENTRYPOINT ["seq2seq-serve"]' in text and "HEALTHCHECK" in text and "USER 10001" in text


# -- nginx ------------------------------------------------------------------------------------
class Echo(http.server.BaseHTTPRequestHandler):
    """A backend that answers who it is and the X-Forwarded-For it received."""

    def do_GET(self) -> None:
        body = json.dumps({"backend": self.server.name, "xff": self.headers.get("X-Forwarded-For")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


def backend(name: str) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.name = name
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def nginx(tmp_path: Path):
    """deploy/nginx.conf with the replicas' names replaced by two local backends, its port by a free
    one and /tmp by a folder of its own; checked with ``nginx -t``, then started."""
    if shutil.which("nginx") is None:
        reason = "nginx is missing (Debian package nginx; make test installs it as root)"
        if os.environ.get("SEQ2SEQ_REQUIRE_NGINX") == "1":
            pytest.fail(reason + ", and SEQ2SEQ_REQUIRE_NGINX=1")
        pytest.skip(reason)
    backends = {"seq2seq-1": backend("one"), "seq2seq-2": backend("two")}
    port = free_port()
    conf = (ROOT / "deploy" / "nginx.conf").read_text().replace("/tmp/", f"{tmp_path}/")
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    for host, server in backends.items():
        conf = conf.replace(f"server {host}:8000", f"server 127.0.0.1:{server.server_port}")
    (tmp_path / "nginx.conf").write_text(conf)
    args = ["nginx", "-p", str(tmp_path), "-e", "stderr", "-c", str(tmp_path / "nginx.conf")]
    check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0 and "test is successful" in check.stderr, check.stderr
    proc = subprocess.Popen([*args, "-g", "daemon off;"], stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(url + "/nginx-health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
        time.sleep(0.05)
    yield url, backends
    proc.terminate()
    proc.wait(timeout=10)
    for server in backends.values():
        server.shutdown()


def test_nginx_balances_and_sets_the_client_address(nginx) -> None:
    url, backends = nginx
    with httpx.Client(base_url=url, timeout=5) as client:
        seen = [client.post("/translate", headers={"X-Forwarded-For": "6.6.6.6"}).json() for _ in range(8)]
        assert {s["backend"] for s in seen} == {"one", "two"}
        assert {s["xff"] for s in seen} == {"127.0.0.1"}  # the spoofed value never reaches a replica
        backends["seq2seq-1"].shutdown()
        backends["seq2seq-1"].server_close()
        after = [client.get("/health").json()["backend"] for _ in range(4)]
        assert after == ["two"] * 4  # a replica gone: its requests go to the other

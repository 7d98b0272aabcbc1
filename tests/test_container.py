"""The CPU image (Containerfile), built and run as CI does: on a Debian base bootstrapped from the
apt archive (no registry is reachable), with podman, run with a read-only root filesystem and no
capabilities. The tiny checkpoint is mounted read-only at /models: /health, a translation equal to the Translator's, the image's HEALTHCHECK, a non-root
server, and SIGTERM ending it within the grace period.

Needs root, podman, runc and mmdebstrap; elsewhere it skips and says why, and
``SEQ2SEQ_REQUIRE_CONTAINER=1`` (set by ``.ci/run``) makes that a failure. The first build takes
minutes (docs/benchmarks.md); podman's layer cache makes later ones quick."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from redis_fixture import free_port

from seq2seq.translator import Translator

ROOT = Path(__file__).resolve().parents[1]
BASE = "localhost/seq2seq-ci-base:bookworm"
IMAGE = "localhost/seq2seq-ci:test"
GRACE_S = 30
# this machine's quirks (no CAP_SYS_RESOURCE, cgroups v1 hybrid): explicit ulimits, runc
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def require_podman() -> None:
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    reason = None
    if os.geteuid() != 0:
        reason = "building the image needs root (podman, mmdebstrap)"
    elif missing:
        reason = f"{', '.join(missing)} missing (Debian packages; make test installs them as root)"
    if reason and os.environ.get("SEQ2SEQ_REQUIRE_CONTAINER") == "1":
        pytest.fail(reason + ", and SEQ2SEQ_REQUIRE_CONTAINER=1")
    if reason:
        pytest.skip(reason)


def podman(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:2])} failed: {done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    require_podman()
    work = tmp_path_factory.mktemp("container")
    (work / "containers.conf").write_text(CONTAINERS_CONF)
    mp = pytest.MonkeyPatch()
    mp.setenv("CONTAINERS_CONF", str(work / "containers.conf"))
    began = time.monotonic()
    if podman("image", "exists", BASE, check=False).returncode != 0:
        sources = next(p for p in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list")
                       if Path(p).exists())  # fmt: skip
        subprocess.run(["mmdebstrap", "--variant=minbase", "--include=ca-certificates,python3,python3-venv",
                        "bookworm", str(work / "base.tar"), sources], check=True, capture_output=True,
                       timeout=900)  # fmt: skip
        podman("import", str(work / "base.tar"), BASE)
        (work / "base.tar").unlink()
    bootstrapped = time.monotonic()
    # this machine's pip settings, given to the build (never written into the Containerfile): its
    # CA bundle, and the folder with torch's CPU wheel in place of the PyTorch index
    ca = os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
    pip_conf = ["[global]", "cert = /run/host-ca.crt"]
    if os.environ.get("PIP_INDEX_URL"):
        pip_conf.append(f"index-url = {os.environ['PIP_INDEX_URL']}")
    args = ["build", "--format", "docker", "-f", "Containerfile", "--build-arg", f"BASE={BASE}",
            "--volume", f"{ca}:/run/host-ca.crt:ro"]  # fmt: skip
    wheels = os.environ.get("PIP_FIND_LINKS", "")
    if wheels and Path(wheels).is_dir():
        pip_conf.append("find-links = /run/wheels")
        args += ["--volume", f"{wheels}:/run/wheels:ro", "--build-arg", "TORCH_INDEX_URL="]
    (work / "pip.conf").write_text("\n".join(pip_conf) + "\n")
    args += ["--volume", f"{work / 'pip.conf'}:/etc/pip.conf:ro", "-t", IMAGE, str(ROOT)]
    podman(*args, timeout=1800)
    print(
        f"\ncontainer image: base {bootstrapped - began:.0f} s, build {time.monotonic() - bootstrapped:.0f} s"
    )
    yield IMAGE
    mp.undo()


@pytest.fixture
def container(image: str, tiny_checkpoint: Path, tmp_path: Path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_checkpoint, models / "tiny.ckpt")
    models.chmod(0o755), (models / "tiny.ckpt").chmod(0o644)  # readable by the image's user
    name, port = f"seq2seq-ci-{uuid.uuid4().hex[:8]}", free_port()
    # locked down as deploy/kubernetes/deployment.yaml runs it: read-only root, a writable /tmp, no capabilities
    podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", "-v", f"{models}:/models:ro",
           "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
           "-e", "OMP_NUM_THREADS=1", image, "--host", "0.0.0.0", "--threads", "1")  # fmt: skip
    url, began = f"http://127.0.0.1:{port}", time.monotonic()
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        if state != "running" or time.monotonic() - began > 240:
            logs = podman("logs", name, check=False)
            podman("rm", "-f", name, check=False)
            raise AssertionError(
                f"the container is {state}, not healthy: {(logs.stdout + logs.stderr)[-3000:]}"
            )
        time.sleep(0.5)
    print(f"\ncontainer ready in {time.monotonic() - began:.1f} s")
    yield name, url
    podman("rm", "-f", name, check=False)


def test_image_serves_translates_and_stops_on_sigterm(container, tiny_checkpoint: Path) -> None:
    name, url = container
    text = "the cat sits on the mat"
    reply = httpx.post(url + "/translate", json={"text": text, "beam_size": 1}, timeout=60)
    assert reply.status_code == 200, reply.text
    (reference,) = Translator.from_checkpoint(tiny_checkpoint).translate([text], beam_size=1, max_length=256)
    assert reply.json()["translations"][0]["text"] == reference.text
    assert podman("exec", name, "id", "-u").stdout.strip() == "10001"  # not root
    assert podman("healthcheck", "run", name, check=False).returncode == 0  # the image's HEALTHCHECK
    began = time.monotonic()
    podman("stop", "-t", str(GRACE_S), name, timeout=GRACE_S + 30)
    took = time.monotonic() - began
    state = podman("inspect", "--format", "{{.State.ExitCode}} {{.State.Status}}", name).stdout.split()
    assert took < GRACE_S and state == ["0", "exited"], (took, state, podman("logs", name).stderr[-2000:])
    print(f"\ncontainer stopped on SIGTERM in {took:.1f} s")

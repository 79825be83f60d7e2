"""Checks of docker/ that need no Docker engine (CI runs them through
scripts/test.sh): the steps the images run are the project's scripts, and
what the images and manifests configure is what `pivot serve` understands.

- Dockerfiles: the build stage runs scripts/build.sh (which runs setup.sh)
  and scripts/fetch-model.sh — the same scripts CI runs; the runtime stage
  installs exactly the Debian packages that hold the libraries the built
  binary links (ldd + dpkg -S on this Debian 12 machine), runs as a
  non-root user, and every PIVOT_* variable set is one `pivot serve` reads.
- The image's ENTRYPOINT and HEALTHCHECK commands, run verbatim against the
  real binary: the log goes to stdout, the health check passes once the
  model is loaded, SIGTERM exits 0.
- compose.yaml and k8s/*.yaml parse; probes, Prometheus annotations,
  resources and grace periods are consistent with the drain timeout."""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(os.environ.get("PIVOT_BIN", REPO / "build" / "cli" / "pivot"))
MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DOCKERFILES = ["Dockerfile", "Dockerfile.cuda"]


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined, comments dropped."""
    out, cur = [], ""
    for line in (HERE / name).read_text().splitlines():
        if line.strip().startswith("#"):
            continue
        cur += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if cur.strip():
                op, _, rest = cur.strip().partition(" ")
                out.append((op.upper(), rest.strip()))
            cur = ""
    return out


def stages(name: str) -> list[list[tuple[str, str]]]:
    st: list[list[tuple[str, str]]] = []
    for op, rest in instructions(name):
        if op == "FROM":
            st.append([])
        if st:
            st[-1].append((op, rest))
    return st


@pytest.fixture(scope="module")
def serve_env_names() -> set[str]:
    if not BIN.is_file():
        pytest.skip(f"no binary at {BIN}")
    h = subprocess.run([str(BIN), "serve", "--help"], capture_output=True, text=True).stdout
    flags = re.findall(r"^\s+--([a-z0-9-]+)", h, re.M)
    assert "drain-timeout" in flags
    return {"PIVOT_" + f.upper().replace("-", "_") for f in flags}


def env_of(stage) -> dict[str, str]:
    env = {}
    for op, rest in stage:
        if op == "ENV":
            for tok in shlex.split(rest):
                k, _, v = tok.partition("=")
                env[k] = v
    return env


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_build_stage_runs_the_project_scripts(name):
    build, runtime = stages(name)
    runs = " ".join(rest for op, rest in build if op == "RUN")
    scripts = set(re.findall(r"scripts/[\w.-]+\.sh", runs))
    assert {"scripts/build.sh", "scripts/fetch-model.sh"} <= scripts
    for s in scripts:
        assert (REPO / s).is_file(), s
    # build.sh runs setup.sh first: the package list CI installs
    assert "scripts/setup.sh" in (REPO / "scripts" / "build.sh").read_text()
    assert not any(op == "RUN" and "apt-get install" in rest and "build-essential" in rest
                   for op, rest in build), "packages belong in scripts/setup.sh"
    # no browser for the web page's tests in an image build (Ubuntu's chromium is a snap)
    assert "SETUP_BROWSER=0 bash scripts/build.sh" in runs
    assert "SETUP_BROWSER" in (REPO / "scripts" / "setup.sh").read_text()


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_runtime_stage(name, serve_env_names):
    _, runtime = stages(name)
    ops = dict((op, rest) for op, rest in runtime)
    assert ops["USER"].split(":")[0] not in ("0", "root")
    assert "/health" in ops["HEALTHCHECK"]
    assert "pivot serve" in ops["ENTRYPOINT"] and "2>&1" in ops["ENTRYPOINT"]
    env = env_of(runtime)
    pivot_vars = {k for k in env if k.startswith("PIVOT_")}
    assert pivot_vars and pivot_vars <= serve_env_names, pivot_vars - serve_env_names
    assert env["PIVOT_MODEL"].startswith("/models/")
    assert not any(op == "RUN" and re.search(r"\b(gcc|clang|build-essential|python3)\b", rest)
                   for op, rest in runtime), "the runtime stage carries no toolchain"


def test_cpu_runtime_packages_are_the_binarys_libraries():
    if not BIN.is_file():
        pytest.skip(f"no binary at {BIN}")
    _, runtime = stages("Dockerfile")
    runs = " ".join(rest for op, rest in runtime if op == "RUN")
    m = re.search(r"--no-install-recommends ([^&]+)&&", runs)
    pkgs = set(m.group(1).split())
    libs = re.findall(r"=> (/\S+)", subprocess.run(["ldd", str(BIN)], capture_output=True,
                                                    text=True).stdout)
    needed = set()
    for lib in libs:
        # A build on a machine with nvcc links the CUDA toolkit's runtime and cuBLAS; the CPU
        # image builds where there is no nvcc, so those belong to Dockerfile.cuda, not here.
        if re.match(r"lib(cudart|cublas|cublasLt)\.so", os.path.basename(lib)):
            continue
        r = subprocess.run(["dpkg", "-S", os.path.realpath(lib)], capture_output=True, text=True)
        if r.returncode:
            r = subprocess.run(["dpkg", "-S", lib], capture_output=True, text=True)
        pkg = r.stdout.split(":")[0]
        if pkg not in ("libc6", "libgcc-s1", "libstdc++6"):  # in every Debian image
            needed.add(pkg)
    assert needed == pkgs, f"binary needs {needed}, image installs {pkgs}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_entrypoint_and_healthcheck_commands_work():
    """Runs the image's ENTRYPOINT and HEALTHCHECK command lines as written,
    with the image's PIVOT_* environment (the model path and port adapted)."""
    if not (BIN.is_file() and MODEL.is_file()):
        pytest.skip("needs the binary and the default model")
    _, runtime = stages("Dockerfile")
    ops = dict((op, rest) for op, rest in runtime)
    entry = json.loads(ops["ENTRYPOINT"])
    hc = json.loads(ops["HEALTHCHECK"].split("CMD", 1)[1].strip())
    entry = [a.replace("/usr/local/bin/pivot", str(BIN)) for a in entry]
    port = free_port()
    env = {**os.environ, **env_of(runtime), "PIVOT_MODEL": str(MODEL), "PIVOT_PORT": str(port),
           "PIVOT_HOST": "127.0.0.1", "PIVOT_THREADS": "2"}
    p = subprocess.Popen(entry, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, ok = time.time() + 60, False
        while time.time() < deadline and not ok:
            assert p.poll() is None, "the entrypoint exited"
            ok = subprocess.run(hc, env=env, timeout=10).returncode == 0
            time.sleep(0.2)
        assert ok, "HEALTHCHECK never passed"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=40)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0
    assert err == "", "everything goes to stdout"
    assert "ready on http://127.0.0.1" in out and "GET /health 200" in out and "stopped" in out


def drain_timeout(env: dict) -> float:
    return float(env.get("PIVOT_DRAIN_TIMEOUT", 30))


def test_compose(serve_env_names):
    c = yaml.safe_load((HERE / "compose.yaml").read_text())
    pv = c["services"]["pivot"]
    assert pv["build"]["dockerfile"] == "docker/Dockerfile"
    assert set(pv["environment"]) <= serve_env_names
    grace = float(pv["stop_grace_period"].rstrip("s"))
    assert grace > drain_timeout(pv["environment"])
    app = c["services"]["app"]
    assert app["network_mode"] == "service:pivot"
    assert app["depends_on"]["pivot"]["condition"] == "service_healthy"
    assert "localhost:8080" in app["environment"]["OPENAI_BASE_URL"]


def pod_specs():
    for f in sorted((HERE / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if not doc:
                continue
            if doc["kind"] == "Pod":
                yield f.name, doc["metadata"], doc["spec"]
            elif doc["kind"] == "Deployment":
                t = doc["spec"]["template"]
                yield f.name, t["metadata"], t["spec"]


def test_k8s_manifests(serve_env_names):
    specs = list(pod_specs())
    assert {n for n, _, _ in specs} == {"sidecar-pod.yaml", "pivot-deployment.yaml"}
    for name, meta, spec in specs:
        ann = meta["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
        pv = next(c for c in spec["containers"] if c["name"] == "pivot")
        env = {e["name"]: e.get("value") for e in pv["env"]}
        assert set(env) <= serve_env_names, set(env) - serve_env_names
        assert ann["prometheus.io/port"] == env["PIVOT_PORT"]
        drain = drain_timeout(env)
        pre = pv.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pre_s = float(pre[1]) if pre[:1] == ["sleep"] else 0
        grace = spec["terminationGracePeriodSeconds"]
        assert drain + pre_s < grace <= drain + pre_s + 10, f"{name}: grace {grace} vs drain {drain}"
        assert pv["readinessProbe"]["httpGet"]["path"] == "/health"
        lv = pv["livenessProbe"]
        assert lv["periodSeconds"] * lv["failureThreshold"] > drain, "liveness would cut a drain"
        assert pv["resources"]["requests"]["cpu"] and pv["resources"]["requests"]["memory"]
        assert env["PIVOT_THREADS"] == str(pv["resources"]["requests"]["cpu"])
        assert spec["securityContext"]["runAsNonRoot"]


def test_inference_pool_selects_the_pivot_replicas():
    """The InferencePool example routes to the Deployment's pods and port."""
    docs = [d for d in yaml.safe_load_all(
        (HERE / "k8s" / "inference-gateway" / "inferencepool.yaml").read_text()) if d]
    pool = next(d for d in docs if d["kind"] == "InferencePool")
    route = next(d for d in docs if d["kind"] == "HTTPRoute")
    dep = next(d for d in yaml.safe_load_all((HERE / "k8s" / "pivot-deployment.yaml").read_text())
               if d and d["kind"] == "Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pool["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pv = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "pivot")
    env = {e["name"]: e.get("value") for e in pv["env"]}
    assert [p["number"] for p in pool["spec"]["targetPorts"]] == [int(env["PIVOT_PORT"])]
    backend = route["spec"]["rules"][0]["backendRefs"][0]
    assert (backend["kind"], backend["name"]) == ("InferencePool", pool["metadata"]["name"])

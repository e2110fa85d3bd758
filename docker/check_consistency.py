#!/usr/bin/env python3
"""Offline checks that the docker/ files still agree with the code they copy from (run by docker/validate.sh).

1. server flags: the tritonserver command line (CMD) of docker/triton-cpu.Dockerfile and docker/triton-gpu.Dockerfile
   has the same flags and values as facecast's `build_server_command` (the local server), except the deliberate
   differences: repository/backend paths, 0.0.0.0 instead of loopback inside a container, and GPU metrics on the GPU
   flavour.
2. served models: the MODELS build arg of the GPU Dockerfile names exactly the networks in weights/ (<name>-cpu.pt)
   and the models derived from them (DERIVED_MODELS).
3. Triton version: the GPU Dockerfile's TRITON_IMAGE default is build_plans.sh's TRITON_IMAGE default (plans must be
   built by the TensorRT that serves them).
4. dashboard metrics: every nv_* / haproxy_* metric the Grafana dashboards query is one that tritonserver 2.51 /
   HAProxy 2.6 exports (docker/grafana/triton-2.51-metrics.txt, recorded from the real server by
   docker/loopback_smoke.py plus three GPU gauges from Triton's documentation; docker/grafana/haproxy-2.6-metrics.txt,
   recorded from Debian's haproxy 2.6.12).
5. dashboard datasources: every datasource uid a dashboard refers to is one that Grafana provisioning creates.

Stdlib only; imports facecast's server module (stdlib + facecast.config) from the checkout. Exit 1 on any mismatch.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

DOCKER = Path(__file__).resolve().parent
ROOT = DOCKER.parent
CONTAINER_ADDRESS = "0.0.0.0"
PATH_FLAGS = {"--model-repository", "--backend-directory"}
ADDRESS_FLAGS = {"--http-address", "--grpc-address", "--metrics-address"}
# flag → value that a flavour sets on purpose although the local (CPU, loopback) server does not. An image's model
# repository is baked in and immutable (a new model version is a new image tag), so its Triton has no model-control
# API; the local server is in explicit mode so a studio's calibrated engagement version loads without a restart.
IMMUTABLE_REPOSITORY = {"--model-control-mode": "none"}
DELIBERATE = {
    "triton-cpu.Dockerfile": IMMUTABLE_REPOSITORY,
    "triton-gpu.Dockerfile": {"--allow-gpu-metrics": "true", **IMMUTABLE_REPOSITORY},
}
LOCAL_ONLY_FLAGS = {"--load-model"}  # explicit mode's "load every model at start"; mode none does that by itself


def dockerfile_cmd(path: Path) -> list[str]:
    """The exec-form CMD of a Dockerfile (the last one), continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    commands = [line for line in text.splitlines() if line.startswith("CMD ")]
    if not commands:
        raise ValueError(f"{path.name}: no CMD")
    return json.loads(commands[-1][4:])


def dockerfile_arg(path: Path, name: str) -> str:
    match = re.search(rf'^ARG {name}=("?)(.*?)\1\s*$', path.read_text(), re.MULTILINE)
    if not match:
        raise ValueError(f"{path.name}: no ARG {name}=...")
    return match[2]


def _flags(command: list[str]) -> dict[str, str]:
    flags = {}
    for word in command[1:]:
        name, _, value = word.partition("=")
        flags[name] = value
    return flags


def local_server_command() -> list[str]:
    """build_server_command of the checkout, wherever the package restructuring has put it."""
    sys.path.insert(0, str(ROOT))
    candidates = sorted(p for p in (ROOT / "facecast").rglob("*.py") if "def build_server_command(" in p.read_text())
    if not candidates:
        raise ValueError("no `def build_server_command(` under facecast/: update docker/check_consistency.py")
    module_name = ".".join(candidates[0].relative_to(ROOT).with_suffix("").parts)
    module = importlib.import_module(module_name)
    env = SimpleNamespace(tritonserver=Path("/env/tritonserver"), backends_dir=Path("/env/backends"))
    settings = SimpleNamespace(host="127.0.0.1", http_port=8000, grpc_port=8001, metrics_port=8002)
    return [str(word) for word in module.build_server_command(env, settings, Path("/repository"))]


def check_server_flags() -> list[str]:
    problems = []
    local = _flags(local_server_command())
    for name in ("triton-cpu.Dockerfile", "triton-gpu.Dockerfile"):
        image = _flags(dockerfile_cmd(DOCKER / name))
        deliberate = DELIBERATE.get(name, {})
        for flag in sorted(set(local) | set(image)):
            if flag not in image and flag in LOCAL_ONLY_FLAGS:
                continue
            if flag not in image:
                problems.append(f"{name}: CMD lacks {flag} (build_server_command sets {flag}={local[flag]})")
            elif flag not in local:
                problems.append(f"{name}: CMD sets {flag}={image[flag]}, build_server_command does not")
            elif flag in PATH_FLAGS:
                continue
            elif flag in ADDRESS_FLAGS:
                if image[flag] != CONTAINER_ADDRESS:
                    problems.append(f"{name}: {flag}={image[flag]}, expected {CONTAINER_ADDRESS} inside a container")
            elif flag in deliberate:
                if image[flag] != deliberate[flag]:
                    problems.append(f"{name}: {flag}={image[flag]}, expected the deliberate {deliberate[flag]}")
            elif image[flag] != local[flag]:
                problems.append(f"{name}: {flag}={image[flag]}, build_server_command has {local[flag]}")
    return problems


# Served models built from other networks' weights instead of their own file (export/text_query.py: text_embedder +
# query_fuser in one graph).
DERIVED_MODELS = {"text_query"}


def check_models() -> list[str]:
    served = {p.name.removesuffix("-cpu.pt") for p in (ROOT / "weights").glob("*-cpu.pt")} | DERIVED_MODELS
    listed = set(dockerfile_arg(DOCKER / "triton-gpu.Dockerfile", "MODELS").split())
    if served != listed:
        return [f"triton-gpu.Dockerfile MODELS {sorted(listed)} != networks in weights/ {sorted(served)}"]
    return []


def check_triton_image() -> list[str]:
    dockerfile = dockerfile_arg(DOCKER / "triton-gpu.Dockerfile", "TRITON_IMAGE")
    script = ROOT / "export" / "tensorrt" / "build_plans.sh"
    match = re.search(r"TRITON_IMAGE:-([^}]+)\}", script.read_text())
    if not match:
        return [f"{script.relative_to(ROOT)}: no ${{TRITON_IMAGE:-...}} default found"]
    if match[1] != dockerfile:
        return [f"triton-gpu.Dockerfile TRITON_IMAGE {dockerfile} != build_plans.sh default {match[1]}"]
    return []


def _names(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


def check_dashboard_metrics() -> list[str]:
    known = {
        "nv_": ("tritonserver 2.51", _names(DOCKER / "grafana" / "triton-2.51-metrics.txt")),
        "haproxy_": ("HAProxy 2.6", _names(DOCKER / "grafana" / "haproxy-2.6-metrics.txt")),
    }
    problems = []
    for dashboard in sorted((DOCKER / "grafana" / "dashboards").glob("*.json")):
        exprs = [
            target.get("expr", "")
            for panel in json.loads(dashboard.read_text()).get("panels", [])
            for target in panel.get("targets", [])
        ]
        if not exprs:
            problems.append(f"{dashboard.name}: no queries")
        for name in sorted(set(re.findall(r"\b(?:nv|haproxy)_[a-z0-9_]+\b", " ".join(exprs)))):
            source, names = known["nv_" if name.startswith("nv_") else "haproxy_"]
            if name not in names:
                problems.append(f"{dashboard.name}: {name} is not a {source} metric")
    return problems


def check_dashboard_datasources() -> list[str]:
    provisioned = set()
    for path in (DOCKER / "grafana" / "provisioning" / "datasources").glob("*.yaml"):
        provisioned |= set(re.findall(r"^\s*uid:\s*(\S+)\s*$", path.read_text(), re.MULTILINE))
    problems = []
    for dashboard in sorted((DOCKER / "grafana" / "dashboards").glob("*.json")):
        used = set(re.findall(r'"uid":\s*"([^"]+)"', dashboard.read_text())) - {
            json.loads(dashboard.read_text())["uid"]
        }
        problems += [
            f"{dashboard.name}: datasource uid {uid!r} is not provisioned" for uid in sorted(used - provisioned)
        ]
    return problems


def main() -> int:
    failed = False
    for check in (
        check_server_flags,
        check_models,
        check_triton_image,
        check_dashboard_metrics,
        check_dashboard_datasources,
    ):
        try:
            problems = check()
        except Exception as error:  # a check that cannot run is a failure, with the reason
            problems = [f"could not run: {type(error).__name__}: {error}"]
        label = check.__name__.removeprefix("check_").replace("_", " ")
        print(f"  {label}: {'ok' if not problems else 'FAILED'}")
        for problem in problems:
            print(f"    {problem}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

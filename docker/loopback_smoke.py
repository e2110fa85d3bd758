#!/usr/bin/env python3
"""Loopback proof of the compose serving path: N real tritonserver replicas behind Debian's haproxy, on 127.0.0.1.

    python3 docker/loopback_smoke.py [--replicas 2] [--triton-env .venv-triton] [--model-repository model_repository]

What it runs is what the images run, as far as one machine without Docker allows:
- each replica is started with the exact command line of docker/triton-cpu.Dockerfile's CMD (read from the file),
  with only the paths, the loopback address and the ports substituted, and the same environment the image sets
  (the server env's bin/ first on PATH, its Python's LIBDIR on LD_LIBRARY_PATH, no PYTHONPATH);
- the balancer config is docker/haproxy/haproxy.cfg rendered for these replicas by docker/loopback_balancer.py.

Checks (exit 1 if any fails): every replica becomes ready; the balancer becomes ready; 32 HTTP inferences through
the balancer all succeed and land on every replica; gRPC (h2c) ServerReady calls through the balancer succeed and
land on every replica (curl --http2-prior-knowledge); after one replica is stopped, the balancer marks it DOWN and
every further request succeeds. It also prints each replica's time to ready and memory (RSS of the server and its
python-backend stubs), and can record the nv_* metric names the server exports (--save-metric-names).

Needs: the server env (`make triton-env`), the CPU model repository (`make repository`), haproxy and curl (Debian).
Everything it starts listens on 127.0.0.1 only and is stopped at exit (by process group of the processes it started).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

DOCKER = Path(__file__).resolve().parent
ROOT = DOCKER.parent
sys.path.insert(0, str(DOCKER))
from check_consistency import dockerfile_cmd  # noqa: E402
from loopback_balancer import Replica, render  # noqa: E402

HOST = "127.0.0.1"
PROBE = (
    "import json, sys, sysconfig; print(json.dumps({'purelib': sysconfig.get_paths()['purelib'], "
    "'libdir': sysconfig.get_config_var('LIBDIR'), 'minor': '%d.%d' % sys.version_info[:2]}))"
)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path
    extra: dict = field(default_factory=dict)

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def http(url: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        return 0, str(error).encode()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.25) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


def server_environment(triton_env: Path) -> tuple[dict[str, str], Path]:
    """The environment the CPU image sets (traps 2 and 3) and the wheel's tritonserver directory (trap 1 checked)."""
    python = triton_env / "bin" / "python3"
    info = json.loads(subprocess.run([str(python), "-c", PROBE], check=True, capture_output=True, text=True).stdout)
    server_dir = Path(info["purelib"]) / "pytriton" / "tritonserver"
    stub = server_dir / "backends" / "python" / "triton_python_backend_stub"
    if not stub.exists():  # trap 1, as the image's RUN does it
        shutil.copy2(server_dir / "python_backend_stubs" / info["minor"] / stub.name, stub)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        VIRTUAL_ENV=str(triton_env),
        PATH=f"{triton_env / 'bin'}:{env.get('PATH', '')}",
        LD_LIBRARY_PATH=f"{info['libdir']}:{env.get('LD_LIBRARY_PATH', '')}".rstrip(":"),
    )
    return env, server_dir


def replica_command(server_dir: Path, repository: Path, replica: Replica, metrics_port: int) -> list[str]:
    command = dockerfile_cmd(DOCKER / "triton-cpu.Dockerfile")
    values = {
        "--model-repository": str(repository),
        "--backend-directory": str(server_dir / "backends"),
        "--http-address": HOST,
        "--grpc-address": HOST,
        "--metrics-address": HOST,
        "--http-port": str(replica.http_port),
        "--grpc-port": str(replica.grpc_port),
        "--metrics-port": str(metrics_port),
    }
    out = [str(server_dir / "bin" / "tritonserver")]
    for word in command[1:]:
        name, _, value = word.partition("=")
        out.append(f"{name}={values.get(name, value)}")
    return out


def group_rss_mb(pgid: int) -> float:
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "(comm)": state ppid pgrp ...
            total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # rss (pages)
    return total / 2**20


def haproxy_servers(stats_port: int) -> dict[tuple[str, str], dict]:
    status, body = http(f"http://{HOST}:{stats_port}/stats;csv")
    if status != 200:
        return {}
    rows = csv.DictReader(io.StringIO(body.decode().lstrip("# ")))
    return {(r["pxname"], r["svname"]): r for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")}


def infer_body(seed: int) -> bytes:
    pixels = [(seed * 7 + i) % 256 for i in range(64 * 64 * 3)]
    return json.dumps(
        {
            "inputs": [{"name": "image", "shape": [1, 64, 64, 3], "datatype": "UINT8", "data": pixels}],
            "outputs": [{"name": "emotion_logits"}],
        }
    ).encode()


def text_body() -> bytes:
    """A small request (~0.5 KB): MiniLM ids of "[CLS] hello [SEP]" padded to 32 (random ids would break its Gather)."""
    ids = [101, 7592, 102] + [0] * 29
    mask = [1, 1, 1] + [0] * 29
    return json.dumps(
        {
            "inputs": [
                {"name": "input_ids", "shape": [1, 32], "datatype": "INT64", "data": ids},
                {"name": "attention_mask", "shape": [1, 32], "datatype": "INT64", "data": mask},
            ],
            "outputs": [{"name": "embedding"}],
        }
    ).encode()


def infer(url: str, seed: int, small: bool = False) -> tuple[bool, str]:
    """One inference, expression_encoder (a ~50 KB JSON request) or text_embedder (small): (ok, "200" or the error)."""
    model, body, output, size = (
        ("text_embedder", text_body(), "embedding", 512)
        if small
        else ("expression_encoder", infer_body(seed), "emotion_logits", 7)
    )
    status, answer = http(f"{url}/v2/models/{model}/infer", body, timeout=60)
    if status != 200:
        return False, f"{status} {answer[:60].decode(errors='replace')}"
    outputs = json.loads(answer)["outputs"]
    return outputs[0]["name"] == output and len(outputs[0]["data"]) == size, "200"


def infer_ok(url: str, seed: int) -> bool:
    return infer(url, seed)[0]


def grpc_server_ready(port: int) -> bool:
    """inference.GRPCInferenceService/ServerReady over h2c: an empty request frame; `ready: true` is bytes 08 01."""
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--http2-prior-knowledge",
            "--max-time",
            "10",
            "-o",
            "-",
            "-D",
            "/dev/stderr",
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--data-binary",
            "@-",
            f"http://{HOST}:{port}/inference.GRPCInferenceService/ServerReady",
        ],
        input=b"\x00\x00\x00\x00\x00",
        capture_output=True,
        timeout=20,
    )
    return (
        result.returncode == 0
        and result.stdout == b"\x00\x00\x00\x00\x02\x08\x01"
        and b"grpc-status: 0" in result.stderr
    )


def successful_requests(url: str, model: str) -> int:
    status, body = http(f"{url}/v2/models/{model}/stats")
    if status != 200:
        return -1
    return sum(int(s["inference_stats"]["success"]["count"]) for s in json.loads(body)["model_stats"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--triton-env", type=Path, default=ROOT / ".venv-triton")
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--base-port", type=int, default=18100, help="replica i uses base+10i .. base+10i+2")
    parser.add_argument("--haproxy", default=shutil.which("haproxy") or "haproxy")
    parser.add_argument("--save-metric-names", type=Path, help="write the nv_* metric names a replica exports here")
    args = parser.parse_args(argv)
    if args.replicas < 2:
        parser.error("--replicas must be at least 2 (the failover check stops one)")
    for tool in (args.haproxy, "curl"):
        if not shutil.which(tool):
            print(f"loopback_smoke: {tool} is not installed (apt-get install -y haproxy curl)", file=sys.stderr)
            return 1

    work = Path(tempfile.mkdtemp(prefix="facecast-lb-"))
    env, server_dir = server_environment(args.triton_env.resolve())
    replicas = [Replica(HOST, args.base_port + 10 * i, args.base_port + 10 * i + 1) for i in range(args.replicas)]
    lb = {"http": args.base_port - 100, "grpc": args.base_port - 99, "stats": args.base_port - 96}
    lb_url = f"http://{HOST}:{lb['http']}"
    processes: list[Process] = []
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            failures.append(what)

    try:
        for number, replica in enumerate(replicas, start=1):
            log = work / f"triton-{number}.log"
            command = replica_command(server_dir, args.model_repository.resolve(), replica, replica.http_port + 2)
            popen = subprocess.Popen(
                command,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=work,
            )
            processes.append(Process(f"triton-{number}", popen, log, {"replica": replica, "started": time.monotonic()}))
        for process in processes:
            url = f"http://{HOST}:{process.extra['replica'].http_port}"
            wait_until(
                lambda process=process, url=url: (
                    process.popen.poll() is None
                    and http(f"{url}/v2/health/ready", timeout=2)[0] == 200
                    or process.popen.poll() is not None
                ),
                180,
                f"{process.name} ready",
            )
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited ({process.popen.returncode}); log: {process.log}")
            ready_s = time.monotonic() - process.extra["started"]
            check(
                True,
                f"{process.name} ready after {ready_s:.1f} s (all replicas started together on "
                f"{os.cpu_count()} cores), RSS with stubs {group_rss_mb(process.popen.pid):.0f} MiB",
            )

        config = work / "haproxy.cfg"
        config.write_text(render(replicas, lb))
        popen = subprocess.Popen(
            [args.haproxy, "-f", str(config), "-db"],
            stdout=(work / "haproxy.log").open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        processes.append(Process("haproxy", popen, work / "haproxy.log"))
        took = wait_until(
            lambda: (
                all(s["status"] == "UP" for s in haproxy_servers(lb["stats"]).values())
                and len(haproxy_servers(lb["stats"])) == 2 * len(replicas)
            ),
            30,
            "every balancer slot UP",
        )
        check(True, f"balancer: all {2 * len(replicas)} server slots UP {took:.1f} s after start (rise 2, inter 2s)")
        check(http(f"{lb_url}/v2/health/ready")[0] == 200, "balancer answers /v2/health/ready 200")

        before = [successful_requests(f"http://{HOST}:{r.http_port}", "expression_encoder") for r in replicas]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda seed: infer_ok(lb_url, seed), range(32)))
        check(
            all(results),
            f"32 HTTP inferences (expression_encoder, 8 at a time) through the balancer: {sum(results)} ok",
        )
        after = [successful_requests(f"http://{HOST}:{r.http_port}", "expression_encoder") for r in replicas]
        spread = [a - b for a, b in zip(after, before)]
        check(all(n > 0 for n in spread), f"leastconn spread the HTTP inferences over every replica: {spread}")

        grpc_before = {k[1]: int(v["stot"]) for k, v in haproxy_servers(lb["stats"]).items() if k[0] == "triton_grpc"}
        grpc = [grpc_server_ready(lb["grpc"]) for _ in range(8)]
        check(all(grpc), f"8 gRPC ServerReady calls (h2c) through the balancer: {sum(grpc)} ok")
        grpc_after = {k[1]: int(v["stot"]) for k, v in haproxy_servers(lb["stats"]).items() if k[0] == "triton_grpc"}
        grpc_spread = {name: grpc_after[name] - grpc_before.get(name, 0) for name in sorted(grpc_after)}
        check(all(n > 0 for n in grpc_spread.values()), f"gRPC calls spread over every replica: {grpc_spread}")

        if args.save_metric_names:
            status, body = http(f"http://{HOST}:{replicas[-1].http_port + 2}/metrics")
            names = sorted({line.split()[2] for line in body.decode().splitlines() if line.startswith("# TYPE nv_")})
            args.save_metric_names.write_text("\n".join(names) + "\n")
            check(status == 200 and bool(names), f"{len(names)} nv_* metric names written to {args.save_metric_names}")

        # Failover: stop replica 1 the way `docker stop` does (SIGTERM), keep sending requests meanwhile.
        victim = processes[0]
        stopped_at = time.monotonic()
        os.killpg(victim.popen.pid, signal.SIGTERM)
        sent = {"small": 0, "large": 0}
        errors: dict[str, int] = {}
        while time.monotonic() - stopped_at < 8:
            kind = "small" if (sent["small"] + sent["large"]) % 2 else "large"
            ok, what = infer(lb_url, sent[kind], small=kind == "small")
            sent[kind] += 1
            if not ok:
                key = f"{kind}: {what}"
                errors[key] = errors.get(key, 0) + 1
            time.sleep(0.05)
        victim.popen.wait(20)
        states = {k: v["status"] for k, v in haproxy_servers(lb["stats"]).items()}
        down = [k for k, state in states.items() if k[1].endswith("1") and state.startswith("DOWN")]
        check(len(down) == 2, f"replica 1 marked DOWN in both backends after SIGTERM: {sorted(states.items())}")
        failed = {kind: sum(n for key, n in errors.items() if key.startswith(kind)) for kind in sent}
        print(
            f"  info in the 8 s after SIGTERM, failed: {failed['small']} of {sent['small']} small requests "
            f"(fit HAProxy's 16 KB buffer: retried on another replica), {failed['large']} of {sent['large']} "
            f"~50 KB requests (too large to retry){': ' if errors else ''}"
            + "; ".join(f"{count}x {what}" for what, count in errors.items())
        )
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda seed: infer_ok(lb_url, seed), range(16)))
        check(all(results), f"after failover, 16 HTTP inferences through the balancer: {sum(results)} ok")
        check(grpc_server_ready(lb["grpc"]), "after failover, gRPC ServerReady through the balancer")
    except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as error:
        failures.append(str(error))
        print(f"  FAIL {error}")
    finally:
        for process in reversed(processes):
            process.stop()
    if failures:
        print(f"loopback_smoke: {len(failures)} check(s) failed; logs in {work}")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("loopback_smoke: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

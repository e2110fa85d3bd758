#!/usr/bin/env python3
"""Render the balancer config for N Triton replicas on loopback, from docker/haproxy/haproxy.cfg itself.

    python3 docker/loopback_balancer.py --http-port 18000 --grpc-port 18001 --stats-port 18404 \\
        --replica 8000:8001 --replica 9000:9001 --out /tmp/facecast-lb.cfg
    haproxy -f /tmp/facecast-lb.cfg        # Debian's haproxy 2.6, the same major/minor as the compose image

A test can then start real `tritonserver` processes on those loopback ports (`facecast serve --http-port ...`) and
check balancing and failover with the SAME settings as docker compose: this script copies docker/haproxy/haproxy.cfg
line for line and rewrites only the lines tagged with "@" markers there:

- `# @compose-only:begin` ... `# @compose-only:end`: dropped (Docker's DNS resolvers; nothing to resolve on loopback);
- `bind ADDR ... # @loopback-bind NAME`: ADDR becomes 127.0.0.1:<port given for NAME>;
- `server-template NAME RANGE triton:PORT OPTIONS # @replicas KIND`: one `server NAMEi 127.0.0.1:PORTi OPTIONS` line
  per replica, with the DNS-only options (`resolvers`, `init-addr`) removed and every container port (8000 HTTP, 8001
  gRPC) mapped to that replica's port, including the check's `port 8000`.

Every default-server line, check, timeout and algorithm is therefore shared, never copied. A template that lacks one
of the markers is an error (the two variants would have drifted). Only loopback addresses are accepted: this is for
tests on one machine. Stdlib only; importable (`render`) as well as a script.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "haproxy" / "haproxy.cfg"
# Container ports of a Triton replica in compose (the flags in docker/triton-*.Dockerfile).
CONTAINER_HTTP_PORT = 8000
CONTAINER_GRPC_PORT = 8001
BIND_NAMES = ("http", "grpc", "stats")
REPLICA_KINDS = ("http", "grpc")
# server-template options that only make sense with DNS discovery (each takes one argument).
DNS_ONLY_OPTIONS = {"resolvers", "init-addr", "resolve-prefer", "resolve-net", "resolve-opts"}

_MARKER = re.compile(r"\s*#\s*@(?P<kind>loopback-bind|replicas)\s+(?P<name>\w+)\s*$")


class TemplateError(ValueError):
    """The template no longer has the markers this script rewrites."""


@dataclass(frozen=True)
class Replica:
    host: str
    http_port: int
    grpc_port: int

    def port_for(self, container_port: int) -> int:
        ports = {CONTAINER_HTTP_PORT: self.http_port, CONTAINER_GRPC_PORT: self.grpc_port}
        if container_port not in ports:
            raise TemplateError(
                f"container port {container_port} in the template is neither HTTP "
                f"({CONTAINER_HTTP_PORT}) nor gRPC ({CONTAINER_GRPC_PORT})"
            )
        return ports[container_port]


def _loopback(host: str) -> str:
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        if host == "localhost":
            return "127.0.0.1"
    raise ValueError(f"{host!r} is not a loopback address: this config is for replicas on this machine only")


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return port


def parse_replica(spec: str) -> Replica:
    """`HTTP:GRPC` or `HOST:HTTP:GRPC` (HOST a loopback address, default 127.0.0.1)."""
    parts = spec.split(":")
    if len(parts) == 2:
        parts = ["127.0.0.1", *parts]
    if len(parts) != 3:
        raise ValueError(f"replica {spec!r}: expected HTTP_PORT:GRPC_PORT or HOST:HTTP_PORT:GRPC_PORT")
    return Replica(_loopback(parts[0]), _port(parts[1]), _port(parts[2]))


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _server_lines(template_line: str, indent: str, replicas: list[Replica]) -> list[str]:
    words = template_line.split()
    if len(words) < 4 or words[0] != "server-template":
        raise TemplateError(
            f"@replicas marks a line that is not `server-template NAME RANGE ADDR ...`: {template_line!r}"
        )
    name, _range, address, options = words[1], words[2], words[3], words[4:]
    container_port = int(address.rsplit(":", 1)[1])
    kept: list[str] = []
    check_port: int | None = None
    index = 0
    while index < len(options):
        option = options[index]
        if option in DNS_ONLY_OPTIONS:
            index += 2
            continue
        if option == "port":
            check_port = int(options[index + 1])
            index += 2
            continue
        kept.append(option)
        index += 1
    lines = []
    for number, replica in enumerate(replicas, start=1):
        extra = [] if check_port is None else ["port", str(replica.port_for(check_port))]
        target = _address(replica.host, replica.port_for(container_port))
        lines.append(" ".join([f"{indent}server", f"{name}{number}", target, *kept, *extra]))
    return lines


def render(
    replicas: list[Replica],
    binds: dict[str, int],
    template: str | None = None,
    bind_host: str = "127.0.0.1",
    source: str = "docker/haproxy/haproxy.cfg",
) -> str:
    """The loopback config text: `template` (default: the compose haproxy.cfg) with the @-tagged lines rewritten."""
    if not replicas:
        raise ValueError("at least one replica is needed")
    missing = set(BIND_NAMES) - set(binds)
    if missing:
        raise ValueError(f"missing bind ports for {sorted(missing)}")
    bind_host = _loopback(bind_host)
    text = TEMPLATE.read_text() if template is None else template
    out = [
        f"# GENERATED by docker/loopback_balancer.py from {source} for {len(replicas)} loopback replica(s):",
        "# " + ", ".join(f"{_address(r.host, r.http_port)} (gRPC {r.grpc_port})" for r in replicas),
        "# Do not edit: change the template (it is also what docker compose runs).",
        "",
    ]
    seen_binds, seen_replicas, skipping, compose_blocks = set(), set(), False, 0
    for line in text.splitlines():
        if "@compose-only:begin" in line:
            if skipping:
                raise TemplateError("nested @compose-only:begin")
            skipping, compose_blocks = True, compose_blocks + 1
            continue
        if "@compose-only:end" in line:
            if not skipping:
                raise TemplateError("@compose-only:end without begin")
            skipping = False
            continue
        if skipping:
            continue
        marker = _MARKER.search(line)
        if marker is None:
            out.append(line)
            continue
        body = line[: marker.start()]
        indent = body[: len(body) - len(body.lstrip())]
        kind, name = marker["kind"], marker["name"]
        if kind == "loopback-bind":
            words = body.split()
            if words[0] != "bind" or name not in binds:
                raise TemplateError(f"@loopback-bind {name}: unexpected line {line!r}")
            words[1] = _address(bind_host, binds[name])
            out.append(indent + " ".join(words))
            seen_binds.add(name)
        else:
            if name not in REPLICA_KINDS:
                raise TemplateError(f"@replicas {name}: unknown kind (expected one of {REPLICA_KINDS})")
            out.extend(_server_lines(body.strip(), indent, replicas))
            seen_replicas.add(name)
    if skipping:
        raise TemplateError("@compose-only:begin without end")
    if seen_binds != set(BIND_NAMES) or seen_replicas != set(REPLICA_KINDS) or compose_blocks != 1:
        raise TemplateError(
            f"template markers changed: binds {sorted(seen_binds)} (want {list(BIND_NAMES)}), "
            f"replicas {sorted(seen_replicas)} (want {list(REPLICA_KINDS)}), "
            f"{compose_blocks} @compose-only block(s) (want 1)"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--replica",
        action="append",
        required=True,
        type=parse_replica,
        metavar="[HOST:]HTTP:GRPC",
        help="a loopback Triton replica (repeat for each)",
    )
    parser.add_argument("--http-port", type=_port, default=18000, help="balancer's HTTP port (default 18000)")
    parser.add_argument("--grpc-port", type=_port, default=18001, help="balancer's gRPC (h2c) port (default 18001)")
    parser.add_argument(
        "--stats-port", type=_port, default=18404, help="balancer's /metrics + /stats port (default 18404)"
    )
    parser.add_argument(
        "--bind-host", default="127.0.0.1", help="loopback address the balancer binds (default 127.0.0.1)"
    )
    parser.add_argument(
        "--template", type=Path, default=TEMPLATE, help="haproxy.cfg to derive from (default: compose's)"
    )
    parser.add_argument("--out", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        text = render(
            args.replica,
            {"http": args.http_port, "grpc": args.grpc_port, "stats": args.stats_port},
            template=args.template.read_text(),
            bind_host=args.bind_host,
            source=str(args.template),
        )
    except (TemplateError, ValueError, OSError) as error:
        print(f"loopback_balancer: {error}", file=sys.stderr)
        return 2
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

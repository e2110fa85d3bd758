#!/usr/bin/env python3
"""Offline checks of the rendered facecast manifests that kubernetes-validate cannot do (validate.sh runs them).

    check_manifests.py manifests RENDERED.yaml --builtin-out BUILTIN.yaml
        Splits `kubectl kustomize` output: built-in kinds go to BUILTIN.yaml for `kubernetes-validate --strict`;
        the Prometheus operator's custom resources (ServiceMonitor, PrometheusRule), which its schemas do not
        know, are validated here against the CRDs' own openAPIV3Schema (schemas/, vendored from
        prometheus-operator v0.93.0) made strict (unknown fields rejected, as `kubectl apply` with server-side
        field validation would). Then checks what ties the objects together: selectors, ports, probes, the
        drain timing, the app's single writer, the HPA ↔ adapter ↔ recording-rule names.
    check_manifests.py rules RENDERED.yaml (--check RULES.yaml | --write RULES.yaml)
        The PrometheusRule's groups as a plain Prometheus rule file (for promtool); --check fails on drift.
    check_manifests.py adapter CONFIG.yaml --rendered RENDERED.yaml --rules-test RULES_TEST.yaml
        prometheus-adapter's config against its Go types (it parses with yaml.UnmarshalStrict), and its
        metricsQuery rendered for one HPA request must be the expression rules_test.yaml tests.

Needs PyYAML and jsonschema. Exit status 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): HERE / "schemas" / "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): HERE / "schemas" / "prometheusrule-monitoring-v1.json",
}
TRITON, APP, METRICS_JOB = "facecast-triton", "facecast-app", "facecast-triton-metrics"
TRITON_FLAGS = [
    "--model-repository=/models",
    "--strict-readiness=true",
    "--exit-on-error=true",
    "--model-control-mode=none",
]
# Illustrative values the adapter fills in for `GET .../namespaces/facecast/pods/*/<metric>` over two pods.
ADAPTER_EXAMPLE = {
    "Series": "pod:triton_waiting_requests:max1m",
    "LabelMatchers": 'namespace="facecast",pod=~"facecast-triton-a|facecast-triton-b"',
    "GroupBy": "pod",
}


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def strict(schema):
    """CRD structural schema → JSON schema that rejects unknown fields (the API server prunes or, with
    field validation Strict, rejects them; a typo'd field would otherwise pass silently)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def find(docs, kind, name):
    for d in docs:
        if d.get("kind") == kind and d["metadata"].get("name") == name:
            return d
    return None


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text))


def check_triton(docs, overlay, problems):
    dep = find(docs, "Deployment", TRITON)
    if dep is None:
        return problems.append(f"no Deployment {TRITON}")
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    if "replicas" in spec:
        problems.append(f"{TRITON}: spec.replicas is set; the HPA owns the replica count")
    ru = spec.get("strategy", {}).get("rollingUpdate", {})
    if (
        spec.get("strategy", {}).get("type") != "RollingUpdate"
        or ru.get("maxSurge") != 1
        or ru.get("maxUnavailable") != 0
    ):
        problems.append(f"{TRITON}: strategy must be RollingUpdate maxSurge 1 / maxUnavailable 0")
    (c,) = [c for c in pod["containers"] if c["name"] == "tritonserver"]
    args = c.get("args", [])
    for flag in TRITON_FLAGS:
        if flag not in args:
            problems.append(f"{TRITON}: argument {flag} missing")
    image = c["image"]
    if ":models-" not in image and "@sha256:" not in image:
        problems.append(f"{TRITON}: image {image} is not tagged by model version (models-<version>) or digest")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if ports != {"http": 8000, "grpc": 8001, "metrics": 8002}:
        problems.append(f"{TRITON}: container ports {ports}, want http 8000 / grpc 8001 / metrics 8002")
    for probe, path in [
        ("startupProbe", "/v2/health/ready"),
        ("readinessProbe", "/v2/health/ready"),
        ("livenessProbe", "/v2/health/live"),
    ]:
        got = c.get(probe, {}).get("httpGet", {}).get("path")
        if got != path:
            problems.append(f"{TRITON}: {probe} path {got}, want {path}")
    sp = c.get("startupProbe", {})
    budget = sp.get("periodSeconds", 10) * sp.get("failureThreshold", 3)
    need = 600 if overlay == "gpu" else 60
    if budget < need:
        problems.append(f"{TRITON}: startupProbe allows {budget} s of model loading, want ≥ {need} s ({overlay})")
    pre = c.get("lifecycle", {}).get("preStop", {})
    sleep = pre.get("sleep", {}).get("seconds")
    if sleep is None and pre.get("exec", {}).get("command", [None])[0] == "sleep":
        sleep = int(pre["exec"]["command"][1])
    exit_timeout = next((int(a.split("=", 1)[1]) for a in args if a.startswith("--exit-timeout-secs=")), 30)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if sleep is None:
        problems.append(f"{TRITON}: no preStop sleep (the pod would get SIGTERM before endpoints drop it)")
    elif grace <= sleep + exit_timeout:
        problems.append(
            f"{TRITON}: terminationGracePeriodSeconds {grace} ≤ preStop {sleep} + exit timeout {exit_timeout}"
        )
    res = c.get("resources", {})
    if not res.get("requests", {}).get("cpu") or not res.get("limits", {}).get("memory"):
        problems.append(f"{TRITON}: needs a CPU request and a memory limit")
    if overlay == "gpu":
        if str(res.get("limits", {}).get("nvidia.com/gpu")) != "1":
            problems.append(f"{TRITON}: gpu overlay without limits nvidia.com/gpu: 1")
        if not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])):
            problems.append(f"{TRITON}: gpu overlay without an nvidia.com/gpu toleration")
        if "--allow-gpu-metrics=true" not in args:
            problems.append(f"{TRITON}: gpu overlay should export GPU metrics")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    pdb = find(docs, "PodDisruptionBudget", TRITON)
    if pdb is None or not matches(pdb["spec"]["selector"]["matchLabels"], labels):
        problems.append(f"PodDisruptionBudget {TRITON} missing or not selecting the Triton pods")
    return dep


def check_services(docs, problems):
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in docs if d.get("kind") == "Deployment"}
    for svc in (d for d in docs if d.get("kind") == "Service"):
        name = svc["metadata"]["name"]
        targets = [t for t in pods.values() if matches(svc["spec"].get("selector", {}), t["metadata"]["labels"])]
        if not targets:
            problems.append(f"Service {name} selects no Deployment's pods")
            continue
        named = {p["name"] for t in targets for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            if isinstance(port.get("targetPort"), str) and port["targetPort"] not in named:
                problems.append(f"Service {name}: targetPort {port['targetPort']} is no container port name")


def check_app(docs, problems):
    dep = find(docs, "Deployment", APP)
    if dep is None:
        return problems.append(f"no Deployment {APP}")
    if dep["spec"].get("replicas") != 1:
        problems.append(f"{APP}: replicas must be 1 (DuckDB allows one writing process)")
    if dep["spec"].get("strategy", {}).get("type") != "Recreate":
        problems.append(f"{APP}: strategy must be Recreate (a rolling update starts a second DuckDB writer)")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    urls = env.get("FACECAST_TRITON_URLS", "")
    triton_labels = find(docs, "Deployment", TRITON)["spec"]["template"]["metadata"]["labels"]
    for url in filter(None, urls.split(",")):
        host, _, port = url.partition(":")
        svc = find(docs, "Service", host.split(".")[0])
        if svc is None or not matches(svc["spec"].get("selector", {}), triton_labels):
            problems.append(f"{APP}: FACECAST_TRITON_URLS host {host} is not a Service of the Triton pods")
        elif int(port or 80) not in [p["port"] for p in svc["spec"]["ports"]]:
            problems.append(f"{APP}: FACECAST_TRITON_URLS port {port} not on Service {host}")
    if not urls:
        problems.append(f"{APP}: FACECAST_TRITON_URLS not set")
    db = env.get("FACECAST_DB", "")
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod.get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    mounted = [
        m for m in c.get("volumeMounts", []) if m["name"] in claims and db.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    if not mounted:
        problems.append(f"{APP}: FACECAST_DB={db!r} is not on a PersistentVolumeClaim mount")
    elif find(docs, "PersistentVolumeClaim", claims[mounted[0]["name"]]) is None:
        problems.append(f"{APP}: PersistentVolumeClaim {claims[mounted[0]['name']]} is not in the manifests")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if c.get(probe, {}).get("httpGet", {}).get("path") != "/_stcore/health":
            problems.append(f"{APP}: {probe} should GET /_stcore/health")


def check_monitoring(docs, problems):
    sm = find(docs, "ServiceMonitor", TRITON)
    metrics_svc = find(docs, "Service", METRICS_JOB)
    if sm is None or metrics_svc is None:
        return problems.append(f"ServiceMonitor {TRITON} or Service {METRICS_JOB} missing")
    if not matches(sm["spec"]["selector"].get("matchLabels", {}), metrics_svc["metadata"].get("labels", {})):
        problems.append(f"ServiceMonitor {TRITON} does not select Service {METRICS_JOB}")
    others = [
        d["metadata"]["name"]
        for d in docs
        if d.get("kind") == "Service"
        and d is not metrics_svc
        and matches(sm["spec"]["selector"].get("matchLabels", {}), d["metadata"].get("labels", {}))
    ]
    if others:
        problems.append(f"ServiceMonitor {TRITON} also selects {others} (duplicate series under another job)")
    svc_ports = {p["name"] for p in metrics_svc["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        if ep.get("port") not in svc_ports:
            problems.append(f"ServiceMonitor endpoint port {ep.get('port')} is not a port of {METRICS_JOB}")
    rule = find(docs, "PrometheusRule", TRITON)
    text = json.dumps(rule["spec"]) if rule else ""
    jobs = set(re.findall(r'job=\\"([^"\\]+)\\"', text))
    if jobs != {METRICS_JOB}:
        problems.append(f"PrometheusRule selects jobs {sorted(jobs)}; the ServiceMonitor's job is {METRICS_JOB}")


def check_hpa(docs, overlay, problems):
    hpa = find(docs, "HorizontalPodAutoscaler", TRITON)
    if hpa is None:
        return problems.append(f"no HorizontalPodAutoscaler {TRITON}")
    spec = hpa["spec"]
    if spec["scaleTargetRef"] != {"apiVersion": "apps/v1", "kind": "Deployment", "name": TRITON}:
        problems.append(f"HPA targets {spec['scaleTargetRef']}")
    if not 1 <= spec.get("minReplicas", 1) <= spec["maxReplicas"]:
        problems.append("HPA minReplicas/maxReplicas out of order")
    for direction in ("scaleUp", "scaleDown"):
        rules = spec.get("behavior", {}).get(direction, {})
        if "stabilizationWindowSeconds" not in rules or not rules.get("policies"):
            problems.append(f"HPA behavior.{direction} needs an explicit stabilizationWindowSeconds and policies")
    metrics = spec.get("metrics", [])
    if [m["type"] for m in metrics] != ["Pods"] or metrics[0]["pods"]["target"]["type"] != "AverageValue":
        problems.append("HPA should scale on one Pods metric with an AverageValue target")
    return hpa


def validate_crds(docs, problems):
    for d in docs:
        key = (d.get("apiVersion"), d.get("kind"))
        if key not in CRD_SCHEMAS:
            continue
        schema = strict(json.loads(CRD_SCHEMAS[key].read_text()))
        schema.pop("$comment", None)
        validator = jsonschema.Draft7Validator(schema)
        for error in sorted(validator.iter_errors(d), key=lambda e: list(e.path)):
            where = "/".join(str(p) for p in error.path)
            problems.append(f"{d['kind']}/{d['metadata'].get('name')}: {where}: {error.message}")


def cmd_manifests(args) -> list[str]:
    docs = load_docs(Path(args.rendered))
    problems: list[str] = []
    for d in docs:
        if d.get("kind") != "Namespace" and d["metadata"].get("namespace") != args.namespace:
            problems.append(f"{d['kind']}/{d['metadata'].get('name')}: namespace {d['metadata'].get('namespace')}")
    validate_crds(docs, problems)
    check_triton(docs, args.overlay, problems)
    check_services(docs, problems)
    check_app(docs, problems)
    check_monitoring(docs, problems)
    check_hpa(docs, args.overlay, problems)
    builtin = [d for d in docs if not d.get("apiVersion", "").startswith("monitoring.coreos.com/")]
    unknown = [
        d["kind"]
        for d in builtin
        if "." in d["apiVersion"].split("/")[0] and not d["apiVersion"].split("/")[0].endswith(".k8s.io")
    ]
    if unknown:
        problems.append(f"custom kinds with no schema here: {unknown}")
    Path(args.builtin_out).write_text(yaml.safe_dump_all(builtin, sort_keys=False))
    print(
        f"{args.rendered}: {len(docs)} objects; {len(docs) - len(builtin)} Prometheus-operator objects checked "
        f"against their CRD schemas, {len(builtin)} built-in objects → {args.builtin_out}"
    )
    return problems


def rule_file(docs) -> dict:
    rule = find(docs, "PrometheusRule", TRITON)
    return {"groups": copy.deepcopy(rule["spec"]["groups"])}


RULES_HEADER = (
    "# GENERATED from base/prometheusrule.yaml by `check_manifests.py rules ... --write` — edit that file,\n"
    "# not this one. A plain Prometheus rule file so promtool can check and test the rules (rules_test.yaml).\n"
)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line PromQL as YAML literal blocks, as it is written in the PrometheusRule."""


_BlockDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None),
)


def cmd_rules(args) -> list[str]:
    groups = rule_file(load_docs(Path(args.rendered)))
    text = RULES_HEADER + yaml.dump(groups, Dumper=_BlockDumper, sort_keys=False, width=120, allow_unicode=True)
    if args.write:
        Path(args.write).write_text(text)
        print(f"wrote {args.write}")
        return []
    committed = yaml.safe_load(Path(args.check).read_text())
    if committed != groups:
        return [
            f"{args.check} differs from the PrometheusRule in {args.rendered}: regenerate it with "
            f"`check_manifests.py rules RENDERED --write {args.check}`"
        ]
    print(f"{args.check} matches the PrometheusRule's groups")
    return []


# prometheus-adapter's config types (pkg/config/config.go, v0.12), as JSON schema; it loads with UnmarshalStrict.
_STR = {"type": "string"}
_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "template": _STR,
        "namespaced": {"type": "boolean"},
        "overrides": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["resource"],
                "properties": {"group": _STR, "resource": _STR},
            },
        },
    },
}
_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["seriesQuery", "metricsQuery"],
    "properties": {
        "seriesQuery": _STR,
        "metricsQuery": _STR,
        "resources": _RESOURCES,
        "seriesFilters": {
            "type": "array",
            "items": {"type": "object", "additionalProperties": False, "properties": {"is": _STR, "isNot": _STR}},
        },
        "name": {"type": "object", "additionalProperties": False, "properties": {"matches": _STR, "as": _STR}},
    },
}
ADAPTER_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["rules"],
    "properties": {
        "rules": {"type": "array", "items": _RULE},
        "externalRules": {"type": "array", "items": _RULE},
        "resourceRules": {"type": "object"},
    },
}


def cmd_adapter(args) -> list[str]:
    problems: list[str] = []
    config = yaml.safe_load(Path(args.config).read_text())
    for error in jsonschema.Draft7Validator(ADAPTER_SCHEMA).iter_errors(config):
        problems.append(f"{args.config}: {'/'.join(map(str, error.path))}: {error.message}")
    if problems:
        return problems
    docs = load_docs(Path(args.rendered))
    hpa_metric = find(docs, "HorizontalPodAutoscaler", TRITON)["spec"]["metrics"][0]["pods"]["metric"]["name"]
    records = {r["record"] for g in rule_file(docs)["groups"] for r in g["rules"] if "record" in r}
    (rule,) = [r for r in config["rules"] if r.get("name", {}).get("as") == hpa_metric] or [None]
    if rule is None:
        return [f"{args.config}: no rule exposes the HPA's metric {hpa_metric}"]
    series = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", rule["seriesQuery"]).group(1)
    if series not in records:
        problems.append(f"{args.config}: seriesQuery reads {series}, which no recording rule writes")
    if not re.fullmatch(rule["name"]["matches"], series):
        problems.append(f"{args.config}: name.matches does not match {series}")
    if set(rule["resources"].get("overrides", {})) != {"namespace", "pod"}:
        problems.append(f"{args.config}: the rule must map the namespace and pod labels to resources")
    rendered = rule["metricsQuery"]
    for key, value in ADAPTER_EXAMPLE.items():
        rendered = rendered.replace(f"<<.{key}>>", value)
    tests = yaml.safe_load(Path(args.rules_test).read_text())
    exprs = {t["expr"].strip() for case in tests["tests"] for t in case.get("promql_expr_test", [])}
    if rendered.strip() not in exprs:
        problems.append(f"{args.rules_test} does not test the adapter's query as the HPA would run it: {rendered}")
    else:
        print(f"{args.config}: rule for {hpa_metric} reads {series}; its query is tested in {args.rules_test}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("manifests")
    m.add_argument("rendered")
    m.add_argument("--builtin-out", required=True)
    m.add_argument("--overlay", choices=["cpu", "gpu"], required=True)
    m.add_argument("--namespace", default="facecast")
    r = sub.add_parser("rules")
    r.add_argument("rendered")
    group = r.add_mutually_exclusive_group(required=True)
    group.add_argument("--check")
    group.add_argument("--write")
    a = sub.add_parser("adapter")
    a.add_argument("config")
    a.add_argument("--rendered", required=True)
    a.add_argument("--rules-test", required=True)
    args = parser.parse_args(argv)
    problems = {"manifests": cmd_manifests, "rules": cmd_rules, "adapter": cmd_adapter}[args.command](args)
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

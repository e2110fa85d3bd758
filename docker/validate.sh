#!/usr/bin/env bash
# Every offline check of docker/ (no Docker engine, no GPU needed). Exit status non-zero on any failure.
#
#   bash docker/install-validators.sh /tmp/deploy-tools      # once: PyPI tools into a venv + Debian haproxy/prometheus
#   bash docker/validate.sh
#
# Tools are taken from $DOCKER_TOOLS_VENV (default /tmp/deploy-tools), then from PATH. A missing tool is a failure
# that names the install command, unless DOCKER_VALIDATE_ALLOW_MISSING=1 (then its checks are skipped and listed).
# DOCKER_VALIDATE_LOOPBACK=1 also runs docker/loopback_smoke.py (real tritonserver replicas + haproxy on loopback;
# needs `make triton-env repository`).
#
# Checks:
#   compose    check-jsonschema (compose-spec schema) on compose.yaml and compose.gpu.yaml; `docker-compose config`
#              (Compose v2's own loader: interpolation, references, profiles) on compose.yaml and on the merged
#              compose.yaml + compose.gpu.yaml, whose output is schema-checked again
#   dockerfiles  hadolint (every rule, failure threshold "style") on every *.Dockerfile
#   shell      shellcheck on docker/*.sh
#   yaml       yamllint -c docker/.yamllint on every YAML file under docker/ (docker/k8s included)
#   balancer   haproxy -c in zero-warning mode on haproxy/haproxy.cfg and on the loopback variant rendered from it
#   prometheus promtool check config on prometheus/prometheus.yml; promtool check rules on every query of the
#              Grafana dashboards (so each PromQL expression parses)
#   grafana    JSON validity of the dashboards
#   consistency  docker/check_consistency.py: image command lines vs build_server_command, model list vs weights/,
#              Triton image vs build_plans.sh, dashboard metric names vs what Triton 2.51 / HAProxy 2.6 export
#   controls   negative controls: each validator must reject a deliberately broken input (so a pass means something)
#   k8s        bash docker/k8s/validate.sh, if that file exists
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${DOCKER_TOOLS_VENV:-/tmp/deploy-tools}
allow_missing=${DOCKER_VALIDATE_ALLOW_MISSING:-0}
install_hint="bash docker/install-validators.sh $venv"
passed=0
failed=()
skipped=()

tool() {  # tool NAME → path of NAME in the venv or on PATH, or nothing
  if [ -x "$venv/bin/$1" ]; then echo "$venv/bin/$1"; else command -v "$1" 2>/dev/null || true; fi
}
need() {  # need NAME... → 0 if all present; otherwise records a failure (or a skip) and returns 1
  local missing=()
  for name in "$@"; do [ -n "$(tool "$name")" ] || missing+=("$name"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$allow_missing" = 1 ]; then
    skipped+=("$current (missing: ${missing[*]})")
  else
    echo "FAIL: $current needs ${missing[*]}: install with: $install_hint" >&2
    failed+=("$current (missing: ${missing[*]})")
  fi
  return 1
}
check() {  # check NAME COMMAND... → runs it, records pass/fail
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else echo "FAIL: $name" >&2; failed+=("$name"); fi
}
section() { current=$1; echo "== $1"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$here" || exit 2

section compose
if need check-jsonschema; then
  check "compose schema" "$(tool check-jsonschema)" --builtin-schema vendor.compose-spec compose.yaml compose.gpu.yaml
fi
compose=()
if [ -n "$(tool docker-compose)" ]; then compose=("$(tool docker-compose)")
elif docker compose version >/dev/null 2>&1; then compose=(docker compose)
fi
if [ ${#compose[@]} -gt 0 ] || need docker-compose; then
  check "compose config (cpu, all profiles)" "${compose[@]}" -f compose.yaml --profile monitoring config --quiet
  if check "compose config (cpu + gpu override merged)" \
      "${compose[@]}" -f compose.yaml -f compose.gpu.yaml --profile monitoring config --output "$work/merged.yaml" \
      && [ -n "$(tool check-jsonschema)" ]; then
    check "compose schema (merged view)" "$(tool check-jsonschema)" --builtin-schema vendor.compose-spec \
      "$work/merged.yaml"
  fi
fi

section dockerfiles
if need hadolint; then
  for dockerfile in *.Dockerfile; do
    check "hadolint $dockerfile" "$(tool hadolint)" --failure-threshold style "$dockerfile"
  done
fi

section shell
if need shellcheck; then
  check "shellcheck docker/*.sh" "$(tool shellcheck)" ./*.sh
fi

section yaml
if need yamllint; then
  check "yamllint docker/" "$(tool yamllint)" --strict -c .yamllint .
fi

section balancer
if need haproxy; then
  check "haproxy -c haproxy/haproxy.cfg" haproxy -dW -q -c -f haproxy/haproxy.cfg
  if check "render the loopback variant" python3 loopback_balancer.py --replica 18100:18101 --replica 18200:18201 \
      --replica 18300:18301 --out "$work/loopback.cfg"; then
    check "haproxy -c on the loopback variant" haproxy -dW -q -c -f "$work/loopback.cfg"
  fi
fi

section prometheus
if need promtool; then
  check "promtool check config" promtool check config --syntax-only prometheus/prometheus.yml
  # Every dashboard query as a recording rule, with Grafana's variables given typical values, so promtool parses it.
  python3 - grafana/dashboards/*.json > "$work/dashboard-queries.rules.yml" <<'EOF'
import json, sys
print("groups:\n  - name: dashboard_queries\n    rules:")
for path in sys.argv[1:]:
    for number, panel in enumerate(json.load(open(path))["panels"]):
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$model", ".*")
            print(f"      - record: dashboard:panel_{number}_{target['refId']}\n        expr: {json.dumps(expr)}")
EOF
  check "promtool check rules (dashboard queries)" promtool check rules "$work/dashboard-queries.rules.yml"
fi

section grafana
for dashboard in grafana/dashboards/*.json; do
  check "valid JSON $dashboard" python3 -m json.tool "$dashboard" /dev/null
done

section consistency
check "check_consistency.py" python3 check_consistency.py

section controls
# Broken inputs each validator must reject; a validator that accepts them proves nothing when it passes.
printf 'services:\n  x:\n    image: a\n    not_a_compose_key: 1\n' > "$work/bad-compose.yaml"
printf 'FROM python:latest\nRUN pip install flask\n' > "$work/bad.Dockerfile"
printf 'defaults\n    mode http\nbackend b\n    balance no-such-algorithm\n' > "$work/bad-haproxy.cfg"
printf 'scrape_configs:\n  - job_name: x\n    dns_sd_configs:\n      - names: [a]\n        type: NOPE\n' \
  > "$work/bad-prometheus.yml"
printf 'a: 1\na: 2\n' > "$work/bad.yaml"
printf '# @compose-only:begin\nfrontend f\n    bind :8000 # @loopback-bind http\n' > "$work/bad-template.cfg"
reject() {
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then echo "FAIL: $name accepted a broken input" >&2; failed+=("control: $name")
  else echo "$name rejects a broken input: ok"; passed=$((passed + 1)); fi
}
[ -n "$(tool check-jsonschema)" ] && reject "check-jsonschema" "$(tool check-jsonschema)" \
  --builtin-schema vendor.compose-spec "$work/bad-compose.yaml"
[ -n "$(tool hadolint)" ] && reject "hadolint" "$(tool hadolint)" --failure-threshold style "$work/bad.Dockerfile"
[ -n "$(tool yamllint)" ] && reject "yamllint" "$(tool yamllint)" -c .yamllint "$work/bad.yaml"
[ -n "$(tool haproxy)" ] && reject "haproxy -c" haproxy -q -c -f "$work/bad-haproxy.cfg"
[ -n "$(tool promtool)" ] && reject "promtool" promtool check config --syntax-only "$work/bad-prometheus.yml"
reject "loopback_balancer (template without its markers)" python3 loopback_balancer.py --replica 1:2 \
  --template "$work/bad-template.cfg"

if [ -f k8s/validate.sh ]; then
  section k8s
  # the same tool venv (it has kubernetes-validate, PyYAML and jsonschema)
  check "docker/k8s/validate.sh" env K8S_TOOLS_VENV="${K8S_TOOLS_VENV:-$venv}" bash k8s/validate.sh
fi

if [ "${DOCKER_VALIDATE_LOOPBACK:-0}" = 1 ]; then
  section loopback
  check "loopback_smoke.py" python3 loopback_smoke.py
fi

echo "validate: $passed passed, ${#failed[@]} failed${skipped:+, skipped: ${skipped[*]}}"
for name in "${failed[@]}"; do echo "  failed: $name"; done
[ ${#failed[@]} -eq 0 ]

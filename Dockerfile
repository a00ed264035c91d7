# syntax=docker/dockerfile:1
# bedrock-batch-exporter image: a wheel built in the first stage, installed into a venv on a slim Python base.
# Build:  docker build -t bedrock-batch-exporter:0.1.0 --build-arg VERSION=0.1.0 .
# Run:    docker run --read-only -p 9816:9816 -v "$PWD/config.yaml:/etc/bedrock-batch-exporter/config.yaml:ro" \
#           bedrock-batch-exporter:0.1.0
ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
# The project's wheel plus every dependency's, so the final stage installs offline and needs no compiler.
RUN python -m pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# CI sets these: --build-arg VERSION=... REVISION=$(git rev-parse HEAD) SOURCE=<repository URL>.
ARG VERSION=0.1.0
ARG REVISION=""
ARG SOURCE=""
LABEL org.opencontainers.image.title="bedrock-batch-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Amazon Bedrock batch inference (CloudWatch AWS/Bedrock/Batch)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The venv gets no pip of its own; the base image's pip installs into it, from the wheels only, with bytecode
# compiled now so that nothing is written at run time (the root filesystem may be read-only).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/venv \
    && python -m pip --python /opt/venv/bin/python install --no-cache-dir --disable-pip-version-check \
        --no-index --find-links /wheels bedrock-batch-exporter \
    && /opt/venv/bin/bedrock-batch-exporter --version
# glibc malloc: at most two arenas, buffers of 128 KiB or more mapped on their own and returned when freed
# (mallopt(3); at 10,000 series 124 -> 95 MB resident, docs/performance.md). Override with `docker run -e`/the chart.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=131072
COPY config.example.yaml /etc/bedrock-batch-exporter/config.yaml
# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
EXPOSE 9816
# Kubernetes ignores HEALTHCHECK and uses the chart's probes; this serves `docker run` and compose. Plain HTTP first,
# then HTTPS (a web config with tls_server_config; the certificate is not verified: it is our own process). With basic
# auth, set health_without_auth: true in the web config, or the check fails with 401.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import ssl, urllib.request as u\nfor s in ('http', 'https'):\n    try:\n        u.urlopen(s + '://127.0.0.1:9816/healthz', timeout=2, context=ssl._create_unverified_context())\n        raise SystemExit(0)\n    except OSError:\n        pass\nraise SystemExit(1)"]
ENTRYPOINT ["bedrock-batch-exporter"]
CMD ["run", "--config", "/etc/bedrock-batch-exporter/config.yaml"]

# syntax=docker/dockerfile:1
# The mediastream gateway. Build at the repository root:
#   docker build -t mediastream .
# Run (embedded Asterisk emulator, for a look):  docker run --rm -p 50051:50051 mediastream
# Against a real Asterisk, see docs/operations.md (media needs host networking
# or a routable container address: MEDIASTREAM_MEDIA_HOST).
#
# Stage 1 installs the locked dependencies and the gateway into a virtual
# environment with uv, exactly as uv.lock pins them (nothing is resolved).
# Stage 2 copies that environment alone and runs it as a non-root user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/mediastream
RUN pip install "uv==${UV_VERSION}"
WORKDIR /src
# Dependencies first, so this layer is rebuilt only when the lock changes. The
# Python SDK is a workspace member: uv needs its pyproject.toml to read the
# lock, but it is not installed (it is only in the dev group).
COPY pyproject.toml uv.lock README.md ./
COPY sdk/python/pyproject.toml sdk/python/
RUN uv sync --frozen --no-dev --no-install-workspace
COPY server/ server/
RUN uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 mediastream \
    && useradd --system --uid 10001 --gid mediastream --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin mediastream
COPY --from=build /opt/mediastream /opt/mediastream
COPY deploy/healthcheck.py /opt/mediastream/healthcheck.py
# Container defaults: listen on every interface, a fixed AudioSocket port,
# JSON logs. Everything else is the gateway's default; override with -e.
# MEDIASTREAM_MEDIA_HOST must be an address of this container (or host, with
# host networking) that Asterisk can reach: the gateway binds it.
ENV PATH=/opt/mediastream/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MEDIASTREAM_GRPC_LISTEN=0.0.0.0:50051 \
    MEDIASTREAM_WS_LISTEN=0.0.0.0:8080 \
    MEDIASTREAM_METRICS_LISTEN=0.0.0.0:9464 \
    MEDIASTREAM_AUDIOSOCKET_PORT=9092 \
    MEDIASTREAM_LOG_FORMAT=json
USER 10001:10001
# gRPC, WebSocket, Prometheus metrics, AudioSocket (TCP, from Asterisk).
# RTP uses one UDP port per stream from the kernel's ephemeral range: publish
# nothing for it; see docs/operations.md.
EXPOSE 50051/tcp 8080/tcp 9464/tcp 9092/tcp
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/opt/mediastream/healthcheck.py"]
# SIGTERM drains: NOT_SERVING at once, streams get MEDIASTREAM_DRAIN_TIMEOUT_S
# (30 s) to finish. Stop with a longer timeout: docker stop -t 45.
STOPSIGNAL SIGTERM
ENTRYPOINT ["mediastream"]
CMD ["serve"]

# KOSMoS server: Socket.IO control plane (6000), Flower SuperLink (9092) and, when metrics_address
# is set (docker-compose.yml sets 0.0.0.0:9464), the token-free Prometheus listener (9464).
# Build from the repository root:  docker build -f docker/server.Dockerfile -t kosmos-fl-server .
FROM python:3.11-slim-bookworm
ARG TORCH_INDEX_URL=""
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 FLWR_TELEMETRY_ENABLED=0
WORKDIR /opt/kosmos-fl
COPY pyproject.toml README.md ./
COPY src ./src
# work_dir exists in the image, owned by kosmos: a new named volume mounted there (compose's
# server-work) takes that owner, so the server can write its registry and sessions to it
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0; \
    else pip install torch==2.13.0; fi \
 && pip install . \
 && useradd --create-home --uid 1000 kosmos \
 && mkdir -p /var/lib/kosmos/work /data /config && chown -R kosmos /var/lib/kosmos
COPY docker/server.config.yaml /config/config.yaml
USER kosmos
WORKDIR /var/lib/kosmos
EXPOSE 6000 9092 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:6000/health', timeout=4)" || exit 1
ENTRYPOINT ["kosmos-fl", "server", "--config", "/config/config.yaml"]

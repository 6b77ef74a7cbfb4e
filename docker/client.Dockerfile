# KOSMoS client: registers with the server over Socket.IO, trains on /data when a session starts.
# Build from the repository root:  docker build -f docker/client.Dockerfile -t kosmos-fl-client .
FROM python:3.11-slim-bookworm
ARG TORCH_INDEX_URL=""
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 FLWR_TELEMETRY_ENABLED=0
WORKDIR /opt/kosmos-fl
COPY pyproject.toml README.md ./
COPY src ./src
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0; \
    else pip install torch==2.13.0; fi \
 && pip install . \
 && useradd --create-home --uid 1000 kosmos \
 && mkdir -p /var/lib/kosmos /data /config && chown -R kosmos /var/lib/kosmos
COPY docker/client.config.yaml /config/config.yaml
USER kosmos
WORKDIR /var/lib/kosmos
ENTRYPOINT ["kosmos-fl", "client", "--config", "/config/config.yaml"]

# MLflow tracking server with the Model Registry (SQLite here; PostgreSQL on Kubernetes, hence
# psycopg2) and proxied artifacts, on port 5000. MLflow has no login: keep it on a private network
# (compose does not publish it) and accept only its own host names (no DNS rebinding).
FROM python:3.11-slim-bookworm
ENV PIP_NO_CACHE_DIR=1
RUN pip install "mlflow>=3.10,<4" "psycopg2-binary>=2.9" && mkdir -p /mlflow
VOLUME /mlflow
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000", \
     "--backend-store-uri", "sqlite:////mlflow/mlflow.db", \
     "--artifacts-destination", "/mlflow/artifacts", "--serve-artifacts", \
     "--allowed-hosts", "mlflow,mlflow:5000,localhost,localhost:5000,127.0.0.1,127.0.0.1:5000"]

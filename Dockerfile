# The revocast services for a Docker host (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY producer ./producer
COPY consumers ./consumers
COPY revocast ./revocast
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["revocast"]

# The revocast services for a Docker host (see docker-compose.yml).
#
# Runs as the unprivileged user `revocast` (uid 10001). /keys belongs to it, so the `keys`
# init service can write the private key there with mode 0600 and every other service, the
# same user, can read it; a named volume mounted on /keys starts with this ownership.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY producer ./producer
COPY consumers ./consumers
COPY revocast ./revocast
COPY devstack ./devstack
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin revocast \
    && mkdir /keys && chown revocast:revocast /keys && chmod 0700 /keys
USER revocast
ENTRYPOINT ["revocast"]

# leadbridge as a container daemon. The steps are the same ones .ci/run exercises: pip
# install of the project, then the `leadbridge` entry point.
#
# Dependencies come from requirements.lock (pinned, committed; regenerate with
# `pip-compile --strip-extras --no-emit-index-url --no-emit-find-links
#  --output-file requirements.lock pyproject.toml`) in a layer of their own, so a code
# change rebuilds only the last layer and every build installs the same versions.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    LEADBRIDGE_CONFIG=/etc/leadbridge/leadbridge.yaml

RUN useradd --system --uid 10001 --home-dir /var/lib/leadbridge --create-home leadbridge

WORKDIR /src
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml README.md ./
COPY core ./core
COPY connectors ./connectors
COPY config ./config
RUN pip install --no-deps . && rm -rf /src

# The SQLite store lives on this volume (store: sqlite:////var/lib/leadbridge/leadbridge.db).
VOLUME ["/var/lib/leadbridge"]
WORKDIR /var/lib/leadbridge
USER leadbridge
# The default http.port; a config that changes it publishes its own.
EXPOSE 8080

# Follows the configured port (http.port, or http.health_port when the probes have their own).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "leadbridge.core.app.healthcheck"]

ENTRYPOINT ["leadbridge"]
CMD ["run"]

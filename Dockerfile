# leadbridge as a container daemon. The steps are the same ones .ci/run exercises:
# pip install of the project, then the `leadbridge` entry point.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    LEADBRIDGE_CONFIG=/etc/leadbridge/leadbridge.yaml

RUN useradd --system --uid 10001 --home-dir /var/lib/leadbridge --create-home leadbridge

WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY connectors ./connectors
COPY config ./config
RUN pip install . && rm -rf /src

# The SQLite store lives on this volume (store: sqlite:////var/lib/leadbridge/leadbridge.db).
VOLUME ["/var/lib/leadbridge"]
WORKDIR /var/lib/leadbridge
USER leadbridge
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4); sys.exit(0)"

ENTRYPOINT ["leadbridge"]
CMD ["run"]

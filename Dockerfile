# funnelsync as a sidecar: one process, config mounted, token in the environment.
#   docker build -t funnelsync .
#   docker run -v $PWD/config.toml:/etc/funnelsync/config.toml:ro \
#     -v funnelsync-state:/var/lib/funnelsync -e HUBSPOT_ACCESS_TOKEN funnelsync
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FUNNELSYNC_CONFIG=/etc/funnelsync/config.toml \
    FUNNELSYNC_STATE_URL=sqlite:////var/lib/funnelsync/funnelsync-state.db

RUN useradd --system --uid 10001 --home-dir /var/lib/funnelsync --create-home funnelsync

WORKDIR /opt/funnelsync
COPY pyproject.toml README.md ./
COPY funnelsync ./funnelsync
RUN pip install . && rm -rf /opt/funnelsync/build

USER funnelsync
WORKDIR /var/lib/funnelsync
VOLUME ["/var/lib/funnelsync"]
EXPOSE 9108

ENTRYPOINT ["funnelsync"]
CMD ["run"]

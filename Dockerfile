# funnelsync as a sidecar: one process, config mounted, token in the environment.
#   docker build -t funnelsync .
#   docker run --read-only --tmpfs /tmp -v "$PWD/config.toml:/etc/funnelsync/config.toml:ro" \
#     -v funnelsync-state:/var/lib/funnelsync -e HUBSPOT_ACCESS_TOKEN -p 9108:9108 --stop-timeout 30 funnelsync
# It runs with a read-only root filesystem: it writes only the state volume and /tmp (a tmpfs).
# deploy/ has a Kubernetes sidecar and a compose file; README.md, "As a container", says what they need.
FROM python:3.11-slim

# HOME is the state volume, not a folder of the image, so that nothing writes to the image.
# FUNNELSYNC_HTTP wins over [daemon].http: a container's port must be reachable from outside it.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/var/lib/funnelsync \
    TMPDIR=/tmp \
    FUNNELSYNC_CONFIG=/etc/funnelsync/config.toml \
    FUNNELSYNC_STATE_URL=sqlite:////var/lib/funnelsync/funnelsync-state.db \
    FUNNELSYNC_HTTP=0.0.0.0:9108

RUN groupadd --system --gid 10001 funnelsync \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/funnelsync --no-create-home funnelsync \
    && mkdir -p /var/lib/funnelsync /etc/funnelsync \
    && chown 10001:10001 /var/lib/funnelsync

WORKDIR /opt/funnelsync
COPY pyproject.toml README.md ./
COPY funnelsync ./funnelsync
# pip compiles the bytecode here, at build time: at run time nothing can write it
RUN pip install . && rm -rf /opt/funnelsync/build

# A number, not a name: Kubernetes' runAsNonRoot can only check a number.
USER 10001:10001
WORKDIR /var/lib/funnelsync
VOLUME ["/var/lib/funnelsync"]
EXPOSE 9108

# python:3.11-slim has no curl. The port is FUNNELSYNC_HTTP's, which the daemon listens on.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ['FUNNELSYNC_HTTP'].rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# SIGTERM stops at the next safe point, within [daemon].stop_grace_seconds (default 20): give the
# container longer than that before SIGKILL (docker's default is 10 s: `docker stop -t 30`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["funnelsync"]
CMD ["run"]

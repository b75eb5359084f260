# TideMQ image: `tidemq worker` by default; `tidemq api` or `tidemq standalone` as the command.
#   docker build -t tidemq .
#   docker run --rm -e TIDEMQ_REDIS_URL=redis://redis:6379/0 -p 1883:1883 tidemq            # a worker
#   docker run --rm -p 1883:1883 -p 8091:8091 tidemq standalone                              # zero setup
# Settings are TIDEMQ_* environment variables (.env.example); see docs/deploy.md.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/tidemq
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tidemq/ tidemq/
COPY workers/ workers/
COPY app/ app/
COPY lua/ lua/
# the wheel ships lua/ as tidemq/lua (pyproject package-dir); fail the build if a script is missing
RUN /opt/tidemq/bin/pip install . \
 && cd / && /opt/tidemq/bin/python -c \
    "from tidemq.store import scripts; assert scripts.SCRIPTS, scripts.LUA_DIR; print(sorted(scripts.SCRIPTS))"

FROM python:${PYTHON_VERSION}-slim
RUN groupadd --system --gid 10001 tidemq \
 && useradd --system --uid 10001 --gid tidemq --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin tidemq
COPY --from=build /opt/tidemq /opt/tidemq
# TIDEMQ_HEALTH_PORT: a worker serves GET /healthz and /readyz (and /metrics) there; the HEALTHCHECK uses it
ENV PATH=/opt/tidemq/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TIDEMQ_HEALTH_PORT=8092
WORKDIR /tmp
# numeric, so Kubernetes can check runAsNonRoot
USER 10001:10001
# MQTT, MQTT over TLS, WebSocket, secure WebSocket, admin API, worker health
EXPOSE 1883 8883 8080 8443 8091 8092
# GET /healthz from inside the container (127.0.0.1 reaches it whatever TIDEMQ_HOST is, loopback or all):
# `tidemq api` answers on TIDEMQ_API_PORT, a worker or `standalone` on TIDEMQ_HEALTH_PORT. PID 1's
# command line (python, the tidemq script, its command) says which one runs. No curl in a slim image.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["python", "-c", "import os, urllib.request as u; api = b'api' in open('/proc/1/cmdline', 'rb').read().split(b'\\0')[1:4]; port = os.environ.get('TIDEMQ_API_PORT', '8091') if api else os.environ['TIDEMQ_HEALTH_PORT']; u.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
# exec form: tidemq is PID 1 and gets SIGTERM itself (workers disconnect clients with 0x8B, then exit)
ENTRYPOINT ["tidemq"]
CMD ["worker"]

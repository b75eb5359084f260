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
RUN /opt/tidemq/bin/pip install ".[uvloop]" \
 && cd / && /opt/tidemq/bin/python -c \
    "from tidemq.store import scripts; assert scripts.SCRIPTS, scripts.LUA_DIR; print(sorted(scripts.SCRIPTS))"

FROM python:${PYTHON_VERSION}-slim
RUN groupadd --system --gid 10001 tidemq \
 && useradd --system --uid 10001 --gid tidemq --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin tidemq
COPY --from=build /opt/tidemq /opt/tidemq
ENV PATH=/opt/tidemq/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
# numeric, so Kubernetes can check runAsNonRoot
USER 10001:10001
# MQTT, MQTT over TLS, WebSocket, secure WebSocket, admin API
EXPOSE 1883 8883 8080 8443 8091
# exec form: tidemq is PID 1 and gets SIGTERM itself (workers disconnect clients with 0x8B, then exit)
ENTRYPOINT ["tidemq"]
CMD ["worker"]

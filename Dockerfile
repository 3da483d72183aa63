# syntax=docker/dockerfile:1
# Build wheels in one stage, install them into a clean slim image in the next, and run as an
# unprivileged user. Hardening (read-only root, distroless, pinned digests) comes later.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin exporter
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels codat-freshness-exporter \
 && rm -rf /wheels
USER 10001:10001
# Fewer malloc arenas: memory freed after each poll's render is reused instead of kept
# per thread (measured in bench/RESULTS.md).
ENV MALLOC_ARENA_MAX=2
EXPOSE 9781
# A TCP connect rather than GET /-/healthy: it holds with --web.config.file (TLS, basic
# auth) too, and /-/healthy answers 200 whenever the listener accepts anyway.
HEALTHCHECK --interval=30s --timeout=5s \
  CMD ["python", "-c", "import socket; socket.create_connection(('127.0.0.1', 9781), 4).close()"]
ENTRYPOINT ["codat-freshness-exporter"]
CMD ["--config.file=/etc/codat-freshness-exporter/config.yaml"]

# syntax=docker/dockerfile:1
# The exporter's image: a virtualenv built in one stage from the lock file, and only that
# virtualenv copied onto a clean base in the last, run as a fixed unprivileged UID. It runs
# with a read-only root filesystem (the Kubernetes manifests in deploy/ do that): nothing but
# the state file's directory is ever written.
#
#     docker build -t codat-freshness-exporter:0.1.0 .
#
# The base is pinned by tag and by the digest of its multi-platform index, so a republished
# tag cannot change what is built without a reviewed change here. Both stages must use the
# same base: the virtualenv's scripts name its Python by path. Any base with python3 3.11
# and its venv module builds it (.ci/run builds on one made from Debian's archive when this
# one cannot be pulled).
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3

FROM ${PYTHON_IMAGE} AS venv
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# The dependencies first, in their own layer: exactly the versions of requirements.lock,
# each file checked against its hash, wheels only (the base has no compiler).
COPY requirements.lock ./
RUN python3 -m venv /opt/codat-freshness-exporter \
 && /opt/codat-freshness-exporter/bin/pip install --require-hashes --no-deps \
      --only-binary=:all: --requirement requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
# Then the exporter alone (its wheel built by the setuptools of pyproject.toml's
# [build-system], which is not installed); `pip check` fails the build if the lock lacks a
# dependency. pip and setuptools (with pkg_resources) go last: nothing installs at run time.
RUN /opt/codat-freshness-exporter/bin/pip install --no-deps . \
 && /opt/codat-freshness-exporter/bin/pip check \
 && /opt/codat-freshness-exporter/bin/python -m pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
# exporter/__init__.py's version; tests/deploy/test_release.py keeps the two equal.
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="codat-freshness-exporter" \
      org.opencontainers.image.description="Prometheus exporter for the freshness of Codat's cached company data" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 exporter \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin exporter \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/codat-freshness-exporter \
 && install -d -m 0755 /etc/codat-freshness-exporter
COPY --from=venv /opt/codat-freshness-exporter /opt/codat-freshness-exporter
# CODAT_EXPORTER_CONFIG is --config.file's default, so `docker run IMAGE --log.level=debug`
# keeps the config path; --demo ignores it.
ENV PATH=/opt/codat-freshness-exporter/bin:$PATH \
    CODAT_EXPORTER_CONFIG=/etc/codat-freshness-exporter/config.yaml \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2
# MALLOC_ARENA_MAX: fewer malloc arenas, so memory freed after each poll's render is reused
# instead of kept per thread (measured in bench/RESULTS.md).
USER 10001:10001
WORKDIR /var/lib/codat-freshness-exporter
VOLUME ["/var/lib/codat-freshness-exporter"]
EXPOSE 9781
# python -m exporter.web.healthcheck reads the exporter's own command line (the container's
# first process) and connects to the address it listens on, so --web.listen-address=:9999
# stays healthy. A TCP connect rather than GET /-/healthy: it holds with TLS and basic auth.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
  CMD ["python", "-m", "exporter.web.healthcheck"]
ENTRYPOINT ["/opt/codat-freshness-exporter/bin/codat-freshness-exporter"]

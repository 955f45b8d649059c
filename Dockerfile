# aegis as a container. Two stages: a build stage installs aegis into a virtualenv, the
# final stage copies only that virtualenv onto a clean base and runs as a non-root user.
#
#   docker build -t aegis .                                    # pip reads PyPI
#   docker build --build-arg BASE=aegis-test-base:bookworm-python3 .  # any Debian-like base with python3
#
# With a ./wheelhouse folder in the build context (pip wheel --wheel-dir wheelhouse .
# setuptools wheel), the build installs from it alone and downloads nothing.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
COPY . /src
RUN python3 -m venv /opt/aegis \
 && if [ -d /src/wheelhouse ]; then \
        /opt/aegis/bin/pip install --no-index --find-links /src/wheelhouse /src; \
    else \
        /opt/aegis/bin/pip install /src; \
    fi \
 && /opt/aegis/bin/aegis --version

FROM ${BASE}
# A fixed uid/gid, so volumes can be prepared on the host (chown 10001). Docker socket
# access comes from the socket's group, added at run time (compose: group_add DOCKER_GID).
ARG AEGIS_UID=10001
RUN groupadd --system --gid "${AEGIS_UID}" aegis \
 && useradd --system --uid "${AEGIS_UID}" --gid aegis --home-dir /var/lib/aegis \
        --shell /usr/sbin/nologin aegis \
 && mkdir -p /var/lib/aegis /journal \
 && chown aegis:aegis /var/lib/aegis /journal
COPY --from=build /opt/aegis /opt/aegis
# The status page, /healthz and /metrics listen on every interface of the container, so
# aegis starts only with AEGIS_HTTP_TOKEN set (openssl rand -hex 32), or AEGIS_HTTP_ADDR=off.
ENV PATH=/opt/aegis/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AEGIS_HOME=/var/lib/aegis \
    AEGIS_JOURNAL_DIR=/journal \
    AEGIS_HTTP_ADDR=0.0.0.0:9465 \
    AEGIS_LOG_FORMAT=json
USER aegis
WORKDIR /var/lib/aegis
VOLUME ["/var/lib/aegis", "/journal"]
EXPOSE 9465
# aegis finishes running jobs for AEGIS_SHUTDOWN_GRACE after SIGTERM; keep that under the
# stop timeout (compose: stop_grace_period).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["aegis", "check"]
ENTRYPOINT ["aegis"]
CMD ["run"]

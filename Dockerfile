# yuekang's production image: `scripts/container build` builds it with podman on a local Debian
# base (no registry is reachable there); elsewhere `docker build .` builds it on the defaults.
# Both bases are arguments so that either works from one file.
ARG BASE=python:3.11-slim
ARG NODE_BASE=node:20-bookworm-slim

# The pages' libraries, exactly as their lockfile says. Development ones (axe-core, for the
# browser tests) are left out, and so are install scripts: the only one is swagger-ui-dist's
# download counter.
FROM ${NODE_BASE} AS assets
WORKDIR /assets
COPY src/yuekang/web/assets/package.json src/yuekang/web/assets/package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error

# The locked dependencies, from wheels only (no compiler anywhere), then yuekang's own wheel made
# by the locked build backend; the backend stays in this stage.
FROM ${BASE} AS python
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY requirements.lock requirements-build.lock ./
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: \
        -r requirements-build.lock \
    && python3 -m venv /opt/yuekang \
    && /opt/yuekang/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: \
        -r requirements.lock
COPY pyproject.toml README.md ./
COPY migrations ./migrations
COPY src/yuekang ./src/yuekang
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation -w dist . \
    && /opt/yuekang/bin/pip install --no-cache-dir --no-deps dist/yuekang-*.whl \
    && /opt/yuekang/bin/pip check \
    && /opt/yuekang/bin/pip uninstall --yes pip

# The reference partner systems (identity registry, Macao) for deploy/compose.yaml: test doubles,
# built only with `--target reference` and never part of the production image below.
FROM ${BASE} AS reference
ENV PATH=/opt/yuekang/bin:$PATH PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /data yuekang \
    && mkdir /data && chown 10001:10001 /data
COPY --from=python /opt/yuekang /opt/yuekang
COPY src/yuekang_reference /opt/yuekang/lib/python3.11/site-packages/yuekang_reference
WORKDIR /data
USER 10001:10001
ENTRYPOINT ["/opt/yuekang/bin/yuekang"]

FROM ${BASE} AS production
# Nothing here is a secret: production gives YUEKANG_DATABASE_URL and YUEKANG_SECRETS__* at run
# time, and refuses to start without them or with development ones.
ENV PATH=/opt/yuekang/bin:$PATH PYTHONUNBUFFERED=1 \
    YUEKANG_ENV=prod YUEKANG_HOST=0.0.0.0 YUEKANG_PORT=8000
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /app yuekang
COPY --from=python /opt/yuekang /opt/yuekang
# Where web/endpoints.py looks for them: beside the installed package.
COPY --from=assets /assets/node_modules \
    /opt/yuekang/lib/python3.11/site-packages/yuekang/web/assets/node_modules
# The working directory and everything installed belong to root: the service writes nothing
# but its temporary files.
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('YUEKANG_PORT', '8000'), timeout=4)"]
# `yuekang db upgrade` is a run of its own (a job before a deployment), never part of serve:
# several replicas starting at once must not race to migrate.
ENTRYPOINT ["/opt/yuekang/bin/yuekang"]
CMD ["serve", "--workers", "2"]

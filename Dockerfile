# The base is a build argument so the image can be built from a local base where no registry is
# reachable (see the container notes in docs/ARCHITECTURE.md when they land).
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    YUEKANG_ENV=prod YUEKANG_HOST=0.0.0.0 YUEKANG_PORT=8000
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
# The service's package only: the reference systems (src/yuekang_reference) are test doubles.
COPY src/yuekang ./src/yuekang
COPY migrations ./migrations
RUN python3 -m venv /opt/yuekang && /opt/yuekang/bin/pip install --no-compile . \
    && useradd --system --uid 10001 --home-dir /app yuekang
USER yuekang
EXPOSE 8000
# Production needs YUEKANG_DATABASE_URL and YUEKANG_SECRETS__* from the environment, and a
# `yuekang db upgrade` run before the first start; the server refuses development secrets.
ENTRYPOINT ["/opt/yuekang/bin/yuekang"]
CMD ["serve", "--workers", "2"]

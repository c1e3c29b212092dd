# syntax=docker/dockerfile:1
# The service's image: one image, every process (`verifier serve`, `verifier sync`,
# `verifier status-lists run`, `verifier notify`, `verifier upstream`); compose.yaml runs them.
#
# Stage 1 builds the compiled twin (Cython, with a C compiler and zlib's headers) into a
# virtual environment and refuses to go on if the compiled twin does not load; stage 2 is
# that environment on a slim Python, run as an unprivileged user. No secrets: API keys are
# made at run time (`verifier api-keys create`) and kept, hashed, in the store of record.
# The install lines are the README's (Deployment; tests/run/test_run_deploy.py checks it).

FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY fastpath ./fastpath
COPY verifier ./verifier
RUN python3 -m venv /opt/verifier
RUN /opt/verifier/bin/pip install --no-cache-dir .
RUN /opt/verifier/bin/python -c "import fastpath, sys; sys.exit(fastpath.IMPLEMENTATION != 'c')"

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /var/lib/verifier --create-home --shell /usr/sbin/nologin verifier
COPY --from=build /opt/verifier /opt/verifier
ENV PATH=/opt/verifier/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VERIFIER_HOST=0.0.0.0 \
    VERIFIER_STATE_DIR=/var/lib/verifier \
    VERIFIER_AUDIT_DIR=/var/lib/verifier/audit \
    VERIFIER_LOG_FORMAT=json
USER verifier
WORKDIR /var/lib/verifier
VOLUME ["/var/lib/verifier"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2).status != 200)"]
ENTRYPOINT ["verifier"]
CMD ["serve"]

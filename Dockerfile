# syntax=docker/dockerfile:1
# One image for both components: the Helm chart runs `kubemint operator` and
# `kubemint token-server` from it. Build: docker build -t kubemint/kubemint:<version> .
#
# The builder and the final stage use the same base: the venv's bin/python is a symlink to the
# base image's /usr/local/bin/python3.11, so /opt/kubemint is only valid on that interpreter.
ARG PYTHON_IMAGE=python:3.11.17-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

# Runtime dependencies first (a layer that changes only with the lock): exact versions whose
# every file hash is in the lock, no resolver (--no-deps: the lock is complete), wheels only
# for both x86_64 and aarch64 (`make image-check`), so no compiler is needed here either.
RUN python -m venv /opt/kubemint
ENV PATH="/opt/kubemint/bin:${PATH}"
COPY requirements/image.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --disable-pip-version-check \
        --require-hashes --no-deps -r /tmp/requirements.txt

# The kubemint package itself. crds/ is not needed: only `kubemint dev up` reads it, from a
# checkout. Its build backend ([build-system] in pyproject.toml) lives only in pip's isolated
# build environment, here in the builder. pip compiles the bytecode here, so the read-only final
# image never has to; pip and setuptools then leave the venv (nothing at run time uses them).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps . \
    && pip uninstall --yes --disable-pip-version-check pip setuptools

FROM ${PYTHON_IMAGE}

# VERSION is kubemint.__version__ (a test keeps them equal); REVISION: the git commit, if given.
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=""
LABEL org.opencontainers.image.title="kubemint" \
      org.opencontainers.image.description="kubemint: the operator and the OAuth2 token server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

COPY --from=builder /opt/kubemint /opt/kubemint

# Read-only root filesystem (the chart's default): nothing writes outside /tmp (an emptyDir in
# the chart). PYTHONDONTWRITEBYTECODE stops Python from trying to write __pycache__ next to
# the sources (the builder already compiled them); PYTHONUNBUFFERED sends logs out at once.
ENV PATH="/opt/kubemint/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Numeric, so that runAsNonRoot can check it; the chart's runAsUser/runAsGroup/fsGroup.
USER 65532:65532

# The token server's default port (KUBEMINT_PORT); the operator listens on none.
EXPOSE 8080

ENTRYPOINT ["kubemint"]
CMD ["token-server"]

# syntax=docker/dockerfile:1
# The nodetask-agent image: a small, non-root, read-only-root-friendly Python image (docs/helm.md, "The image").
#
#   docker build -t registry.example.com/sei/nodetask-agent:0.1.0 .
#
# Stages: `build` compiles wheels of the agent and every dependency (with a C toolchain, for packages that ship no
# wheel); `install` puts them into a virtualenv with no network and no compiler; the final stage copies that
# virtualenv onto the bare Python base: no compiler, no pip, no apt lists, no source tree.
#
# The base is pinned to an exact Python/Debian release. Pin its digest too when you build (for example
# `docker buildx imagetools inspect python:3.11.13-slim-bookworm`): this repository was written on a machine without
# a container engine or registry access, so no digest could be resolved and none is invented here.
FROM python:3.11.13-slim-bookworm AS python-base

FROM python-base AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
RUN pip wheel --wheel-dir /wheels .

FROM python-base AS install
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN python -m venv /opt/nodetask-agent \
 && /opt/nodetask-agent/bin/pip install --no-index --find-links /wheels nodetask-agent \
 && /opt/nodetask-agent/bin/pip uninstall -y pip setuptools \
 && python -m compileall -q /opt/nodetask-agent/lib

FROM python-base AS runtime
# No installer or build backend in the final image: the base's own pip, setuptools and wheel go too (the agent's
# virtualenv does not see the base's site-packages, and no runtime dependency imports pkg_resources).
RUN cd /usr/local/lib/python3.11/site-packages \
 && rm -rf pip pip-* setuptools setuptools-* wheel wheel-* pkg_resources _distutils_hack distutils-precedence.pth \
 && rm -f /usr/local/bin/pip /usr/local/bin/pip3 /usr/local/bin/pip3.11 /usr/local/bin/wheel
COPY --from=install /opt/nodetask-agent /opt/nodetask-agent
# Bytecode was compiled at build time and nothing is written at run time outside the mounted volumes: the node's
# home (SEI_HOME, holding the SQLite store) and /tmp (an emptyDir, also HOME).
ENV PATH=/opt/nodetask-agent/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    SEI_HOME=/sei \
    NODETASK_HTTP_PORT=7777
LABEL org.opencontainers.image.title="nodetask-agent" \
      org.opencontainers.image.description="Sidecar that runs NodeTask resources next to a Sei node" \
      org.opencontainers.image.licenses="Apache-2.0"
# The distroless "nonroot" user and group; the pod's securityContext uses the same IDs (fsGroup 65532).
USER 65532:65532
EXPOSE 7777
ENTRYPOINT ["nodetask-agent"]
CMD ["run"]

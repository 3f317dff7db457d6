# syntax=docker/dockerfile:1
# The nodetask-agent image: a small, non-root, read-only-root-friendly Python image (docs/helm.md, "The image").
#
#   docker build -t registry.example.com/sei/nodetask-agent:0.1.0 .
#
# Stages: `build` makes a virtualenv holding the agent and every dependency at the versions constraints.txt pins, from
# wheels only (`--only-binary=:all:`: no compiler, no sdist build; every dependency ships wheels), strips the debug
# symbols some wheels ship in their extension modules (binutils' strip; about 50 MB) and keeps of botocore's API
# models only the services the agent calls (S3, EC2) and its credential chain needs (STS, SSO, SSO OIDC, sign-in;
# about 26 MB); the final stage copies that virtualenv onto the bare Python base: no compiler, no binutils, no pip, no
# apt lists, no source tree. The kubernetes package (the `kubeconfig` extra) is left out: in a pod the agent reads
# its ServiceAccount directly. Together: an image under 200 MB (tests/deploy/test_image_run.py).
#
# The base is pinned to an exact Python/Debian release *and* its digest (the multi-platform index), so a rebuild gets
# the same bytes. The digest is the one the Docker official images publish for the tag in docker-library/repo-info
# (repos/python/remote/3.11.15-slim-bookworm.md). To refresh it: `skopeo inspect --raw
# docker://python:3.11.15-slim-bookworm | sha256sum` or `crane digest python:3.11.15-slim-bookworm` (or read that
# file again), put tag and digest here, rebuild and run tests/deploy/test_image.py.
#
# BASE may name another image with a Python 3.11 at /usr/local or /usr (for example the local Debian bookworm base
# that scripts/build-image.sh makes with mmdebstrap when the registry cannot be reached):
#   buildah build --build-arg BASE=localhost/nodetask-base:bookworm-3 \
#     --build-arg BUILD_BASE=localhost/nodetask-build-base:bookworm-3 -t nodetask-agent:dev .
ARG BASE=python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3
# The build stage's base: BASE itself (binutils is then installed into the build stage with apt-get), or the same
# Python with binutils already in it (scripts/build-image.sh's local base has no apt).
ARG BUILD_BASE=${BASE}
FROM ${BASE} AS python-base

FROM ${BUILD_BASE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN command -v strip >/dev/null \
 || (apt-get update && apt-get install -y --no-install-recommends binutils && rm -rf /var/lib/apt/lists/*)
WORKDIR /src
# Dependencies first (their layer is reused until pyproject.toml or constraints.txt change), then the agent itself,
# built by the pinned setuptools without build isolation (nothing fetched that the lock does not name). pip check
# proves the set complete; then the installers leave the virtualenv and bytecode is compiled for a read-only root.
COPY pyproject.toml constraints.txt ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > requirements.txt \
 && python -m venv /opt/nodetask-agent \
 && /opt/nodetask-agent/bin/pip install --only-binary=:all: -c constraints.txt pip \
 && /opt/nodetask-agent/bin/pip install --only-binary=:all: -c constraints.txt -r requirements.txt setuptools
COPY README.md ./
COPY agent ./agent
RUN /opt/nodetask-agent/bin/pip install --no-deps --no-build-isolation . \
 && /opt/nodetask-agent/bin/pip check \
 && /opt/nodetask-agent/bin/pip uninstall -y pip setuptools \
 && find /opt/nodetask-agent -name '*.so*' -type f -exec strip --strip-unneeded {} + \
 && find /opt/nodetask-agent/lib/python3.11/site-packages/botocore/data -mindepth 1 -maxdepth 1 -type d \
      ! -name s3 ! -name ec2 ! -name sts ! -name sso ! -name sso-oidc ! -name signin -exec rm -rf {} + \
 && python -m compileall -q /opt/nodetask-agent/lib

FROM python-base AS runtime
# No installer or build backend in the final image: the base's own pip, setuptools and wheel go too (the agent's
# virtualenv does not see the base's site-packages, and no runtime dependency imports pkg_resources).
RUN for packages in /usr/local/lib/python3.11/site-packages /usr/lib/python3/dist-packages; do \
      [ -d "$packages" ] || continue; \
      cd "$packages" \
      && rm -rf pip pip-* setuptools setuptools-* wheel wheel-* pkg_resources _distutils_hack distutils-precedence.pth; \
    done \
 && rm -f /usr/local/bin/pip /usr/local/bin/pip3 /usr/local/bin/pip3.11 /usr/local/bin/wheel /usr/bin/pip /usr/bin/pip3
COPY --from=build /opt/nodetask-agent /opt/nodetask-agent
# Bytecode was compiled at build time and nothing is written at run time outside the mounted volumes: the node's
# home (SEI_HOME, holding the SQLite store) and /tmp (an emptyDir, also HOME).
ENV PATH=/opt/nodetask-agent/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    SEI_HOME=/sei \
    NODETASK_HTTP_PORT=7777
# Provenance (scripts/build-image.sh passes them): VERSION from pyproject.toml, REVISION the git commit, SOURCE the
# repository URL (git remote `origin`).
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="nodetask-agent" \
      org.opencontainers.image.description="Sidecar that runs NodeTask resources next to a Sei node" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
# The distroless "nonroot" user and group; the pod's securityContext uses the same IDs (fsGroup 65532).
USER 65532:65532
EXPOSE 7777
ENTRYPOINT ["nodetask-agent"]
CMD ["run"]

# Monge server image. Pick the JAX flavour at build time:
#   docker build -t monge .                              # CPU
#   docker build -t monge:cuda12 --build-arg JAX_FLAVOR=cuda12 .
#   docker build -t monge:cuda13 --build-arg JAX_FLAVOR=cuda13 .
#   docker run --gpus all -p 127.0.0.1:50051:50051 monge:cuda12
# CUDA flavours take CUDA from pip wheels; the host needs only the NVIDIA driver.
ARG PYTHON_VERSION=3.12
FROM python:${PYTHON_VERSION}-slim

ARG JAX_FLAVOR=cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    XLA_PYTHON_CLIENT_PREALLOCATE=false

WORKDIR /opt/monge
COPY pyproject.toml README.md constraints.txt ./
COPY proto ./proto
COPY solvers ./solvers
COPY server ./server
COPY client ./client
RUN case "$JAX_FLAVOR" in \
      cpu) extra="" ;; \
      cuda12) extra="[cuda12]" ;; \
      cuda13) extra="[cuda13]" ;; \
      *) echo "JAX_FLAVOR must be cpu, cuda12 or cuda13, got $JAX_FLAVOR" >&2; exit 1 ;; \
    esac \
 && pip install ".${extra}" -c constraints.txt \
 && rm -rf /opt/monge/build

RUN useradd --create-home --uid 10001 monge
USER monge
WORKDIR /home/monge

EXPOSE 50051
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["monge", "health", "--target", "127.0.0.1:50051", "--timeout", "5"]
ENTRYPOINT ["monge"]
# Only 0.0.0.0 is reachable through a published port; --insecure says so knowingly.
# Publish to the host's loopback (-p 127.0.0.1:50051:50051) or run with TLS and tokens
# (README, "Security").
CMD ["serve", "--host", "0.0.0.0", "--port", "50051", "--insecure"]

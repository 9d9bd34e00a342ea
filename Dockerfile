# i2v-bot for a GPU host: the bot with its embedded worker (the default command), or a worker alone
# (`python -m generator.worker`). See docs/deploy.md.
#
# torch 2.13.0 from PyPI is its CUDA 13.0 build on Linux x86-64 (it brings its own CUDA libraries); the base
# image matches it and sets up the NVIDIA Container Toolkit's GPU access. The host needs an NVIDIA driver that
# supports CUDA 13.0 (R580 or newer) and the NVIDIA Container Toolkit.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

# The torch build to install; the same pin as scripts/bootstrap.
ARG TORCH_SPEC=torch==2.13.0

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# sqlite3: the online backup of the SQLite job store (docs/deploy.md).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv sqlite3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A non-root user owns the program and the three volumes.
RUN useradd --create-home --uid 10001 --user-group i2v \
    && mkdir -p /app /data /outputs /hf-cache \
    && chown i2v:i2v /app /data /outputs /hf-cache
USER i2v
WORKDIR /app

# torch first, in its own layer: it is by far the largest download and changes least often.
RUN python3 -m venv .venv && .venv/bin/python -m pip install "${TORCH_SPEC}"

COPY --chown=i2v:i2v pyproject.toml README.md ./
COPY --chown=i2v:i2v scripts ./scripts
COPY --chown=i2v:i2v bot ./bot
COPY --chown=i2v:i2v config ./config
COPY --chown=i2v:i2v generator ./generator
COPY --chown=i2v:i2v jobs ./jobs
COPY --chown=i2v:i2v migrations ./migrations
COPY --chown=i2v:i2v web ./web
RUN PYTHON=python3 TORCH_SPEC="${TORCH_SPEC}" scripts/bootstrap

# Everything that lives longer than a container is in a volume: the job store and stored inputs, the MP4s,
# the Hugging Face cache with the model weights.
ENV PATH=/app/.venv/bin:$PATH \
    DATABASE_URL=sqlite+aiosqlite:////data/i2v.sqlite3 \
    DATA_DIR=/data \
    OUTPUT_DIR=/outputs \
    HF_HOME=/hf-cache
VOLUME ["/data", "/outputs", "/hf-cache"]

# SIGTERM lets the worker finish or hand back its job (I2V_GRACE_SECONDS); give the container that long.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]

# provbot bot service: `provbot run` with the webhook, /healthz and /metrics on port 8787.
# Build:  docker build -t provbot .            (with extras: --build-arg EXTRAS=ray)
# Run:    docker run -e PROVBOT_HUB_TOKEN=... -e PROVBOT_BOT__WEBHOOK_SECRET=... \
#           -e PROVBOT_DATABASE_URL=postgresql+psycopg://... -p 8787:8787 -v provbot-data:/data provbot
# With PostgreSQL: deploy/compose.yaml and docs/deploy.md.
ARG PYTHON_VERSION=3.11

# --- stage 1: build the wheel (the same wheel `make wheel-check` installs and tests) ---------------
FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY detectors ./detectors
COPY config ./config
COPY templates ./templates
RUN pip wheel --no-cache-dir --no-deps -w /dist .

# --- stage 2: the runtime, with the wheel installed (not the source tree) --------------------------
FROM python:${PYTHON_VERSION}-slim
# Optional extras of the wheel, comma-separated: "ray" for the Ray executor (docs/deploy.md).
ARG EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_DISABLE_TELEMETRY=1 \
    PROVBOT_DATA_DIR=/data HF_HOME=/data/hf \
    PROVBOT_BOT__WEBHOOK_HOST=0.0.0.0 PROVBOT_BOT__WEBHOOK_PORT=8787

# g++: torch.compile builds the CPU statistics kernels of big --full scans (without it they run
# in eager torch, several times slower).
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*

# torch first, from the PyTorch CPU index, so pip never resolves a CUDA build; then the wheel, with
# torch named again on the same line so the CPU build stays (.ci/wheel-check runs this second line).
COPY --from=build /dist /tmp/dist
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir torch==2.13.0 "$(ls /tmp/dist/provbot-*.whl)${EXTRAS:+[$EXTRAS]}" \
 && rm -rf /tmp/dist \
 && useradd --create-home --uid 10001 provbot \
 && mkdir -p /data && chown provbot /data

USER provbot
WORKDIR /data
VOLUME /data
EXPOSE 8787
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PROVBOT_BOT__WEBHOOK_PORT', '8787'), timeout=4)" || exit 1
CMD ["provbot", "run"]

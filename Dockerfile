# provbot bot service: `provbot run` with the webhook, /healthz and /metrics on port 8787.
# Build: docker build -t provbot .   Run: docker run -e PROVBOT_HUB_TOKEN=... -e PROVBOT_BOT__WEBHOOK_SECRET=... \
#   -e PROVBOT_DATABASE_URL=postgresql+psycopg://... -p 8787:8787 provbot
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_DISABLE_TELEMETRY=1 \
    PROVBOT_BOT__WEBHOOK_HOST=0.0.0.0 PROVBOT_BOT__WEBHOOK_PORT=8787

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY detectors ./detectors
COPY config ./config
COPY templates ./templates

# g++: torch.compile builds the CPU statistics kernels of big --full scans (without it they run
# in eager torch, several times slower).
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*

# torch first and pinned to the CPU build, so pip never resolves a CUDA wheel.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir torch==2.13.0 -e . \
 && useradd --create-home provbot && mkdir -p /app/var && chown provbot /app/var

USER provbot
EXPOSE 8787
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8787/healthz', timeout=4)" || exit 1
CMD ["provbot", "run"]

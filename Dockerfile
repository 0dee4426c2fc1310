# Opsdeck: slim Python, non-root, data in /data, health checked on /healthz.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    OPSDECK_DATA_DIR=/data HTTP_HOST=0.0.0.0 HTTP_PORT=8080

RUN useradd --create-home --uid 10001 opsdeck && mkdir /data && chown opsdeck /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY core ./core
COPY storage ./storage
RUN pip install .

USER opsdeck
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"HTTP_PORT\",\"8080\")}/healthz', timeout=4)"
# SIGTERM: stop taking updates, finish in-flight work, release job leases.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot", "run"]

# Roster as one executable on a slim Debian (docs/deploy.md).
#   docker build -t roster .
#   docker run -d -p 5001:5001 -p 5002:5002 -v roster-data:/data -e ROSTER_TOKEN=... roster
# Inside the container the server listens on 0.0.0.0, not loopback: give it a token (ROSTER_TOKEN);
# without one the API is open to whoever reaches the ports, and the server warns about it.

# --- build: dist/roster, as `pip install '.[binary]' && pyinstaller roster.spec` does outside ---
FROM python:3.11-slim-bookworm AS build
# PyInstaller reads and writes ELF files with binutils' objdump and objcopy (ldd is in the image).
# Debian's packages stay unpinned (a stable release only gets fixes); Roster's Python packages are
# pinned in pyproject.toml, which is what pip installs here.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md roster.spec ./
COPY server ./server
COPY wal ./wal
COPY bench ./bench
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[binary]' \
    && pyinstaller --noconfirm --log-level WARN roster.spec \
    && ./dist/roster config >/dev/null

# --- run: the executable alone, same Debian release (same glibc) as the build stage ---
FROM debian:bookworm-slim
# curl for the HEALTHCHECK; the server itself needs nothing from the image but libc
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 roster \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent \
        --shell /usr/sbin/nologin roster \
    && mkdir /data \
    && chown 10001:10001 /data
COPY --from=build /src/dist/roster /usr/local/bin/roster
COPY LICENSE /usr/share/doc/roster/LICENSE
USER 10001:10001
WORKDIR /data
VOLUME /data
# HTTP API, RESP lane (ROSTER_PORT / ROSTER_RESP_PORT change them; publish the same numbers)
EXPOSE 5001 5002
# start-period: recovery replays the log before /health answers (seconds for millions of channels)
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "curl -fsS --max-time 4 http://127.0.0.1:${ROSTER_PORT:-5001}/health >/dev/null"]
ENTRYPOINT ["roster", "serve", "--host", "0.0.0.0", "--data-dir", "/data"]

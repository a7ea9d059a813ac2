# syntax=docker/dockerfile:1
# Linli in a container: `linli serve` (callbacks + dashboard) as an unprivileged user, with its
# config and SQLite store on the /data volume.
#
#   docker build -t linli .
#   docker run -d --name linli -p 8080:8080 -v linli-data:/data --env-file /etc/linli/linli.env linli
#
# On first start `linli init` writes a commented /data/config.toml (the local demo world's values)
# and creates the store; edit the file on the volume or, better, set LINLI_<SECTION>_<KEY> variables
# in the env file: LINLI_SERVER_PUBLIC_URL, LINLI_WECOM_*, LINLI_OA_*, LINLI_DASHBOARD_PASSWORD.
# `linli serve` refuses demo credentials once public_url is not local.

# -- build: the wheel, from the checkout (bot/_shipped's symlinks pull templates/ and data/ in) ----
FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN python -m pip wheel --no-cache-dir --no-deps -w /wheels .

# -- run --------------------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    # listen on every interface of the container (the config file's 127.0.0.1 would be unreachable)
    LINLI_SERVER_HOST=0.0.0.0 \
    LINLI_SERVER_PORT=8080 \
    # the store directly on the volume, not in /data/data/
    LINLI_STORE_PATH=/data/linli.db
RUN groupadd --system --gid 10001 linli \
 && useradd --system --uid 10001 --gid linli --home-dir /data --no-create-home --shell /usr/sbin/nologin linli \
 && mkdir /data && chown linli:linli /data
COPY --from=build /wheels/ /tmp/wheels/
RUN python -m pip install --no-cache-dir /tmp/wheels/*.whl && rm -rf /tmp/wheels
USER linli
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# the login page needs no session and renders a template: the web app and its files are there
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/login' % os.environ.get('LINLI_SERVER_PORT', '8080'), timeout=4)"]
# init is idempotent: it writes the config only when missing and migrates the store; exec makes
# `linli serve` PID 1, so `docker stop`'s SIGTERM reaches it and it shuts down cleanly
CMD ["sh", "-c", "linli init --config /data/config.toml && exec linli serve --config /data/config.toml"]

# Dev-PyNode: one image for every service (`devpynode serve --only X`), the web app's files (`devpynode gateway
# web`), the migration job and the CLI.
# Build: docker build -t devpynode .   Run: docker run -p 50051:50051 devpynode serve --grpc-host 0.0.0.0

# The web app: TypeScript checked and bundled by Vite (web/src/gen is checked in: no buf needed here).
FROM node:20-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM python:3.11-slim AS build
WORKDIR /src
# Wheels exist for every dependency on this platform: no compiler is needed, even here.
RUN python -m venv /opt/devpynode
COPY pyproject.toml README.md ./
COPY services ./services
RUN /opt/devpynode/bin/pip install --no-cache-dir --disable-pip-version-check ".[tracing]"

FROM python:3.11-slim AS runtime
# libmagic: content type detection of uploads. Nothing else: no compiler, no package manager cache.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmagic1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/devpynode --create-home devpynode
COPY --from=build /opt/devpynode /opt/devpynode
COPY --from=web /web/dist /opt/devpynode/web
ENV PATH=/opt/devpynode/bin:$PATH \
    DEVPYNODE_WEB_DIR=/opt/devpynode/web \
    PYTHONDONTWRITEBYTECODE=1 \
    DEVPYNODE_GRPC_HOST=0.0.0.0 \
    DEVPYNODE_DATA_DIR=/var/lib/devpynode
USER 10001:10001
WORKDIR /var/lib/devpynode
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["devpynode", "health"]
ENTRYPOINT ["devpynode"]
CMD ["serve"]

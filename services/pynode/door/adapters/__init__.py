"""The door's adapters: its gRPC client of the AI router."""

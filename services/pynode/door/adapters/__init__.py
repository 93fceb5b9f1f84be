"""The door's adapters: its clients of the AI router, over gRPC and in this process."""

"""Chat adapters: gRPC clients of its peers."""

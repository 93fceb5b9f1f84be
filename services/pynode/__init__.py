"""Dev-PyNode: a gRPC service mesh for self-hosted AI development (hand-written code)."""

"""Shared core: settings, wiring, the gRPC edge, data and cache plumbing."""

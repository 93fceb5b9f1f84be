"""Adapters of the shared core's ports, one file per technology."""

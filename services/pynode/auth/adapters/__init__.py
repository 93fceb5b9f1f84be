"""Adapters of the auth service's ports."""

"""Adapters of the files service's ports."""

"""Adapters of the AI router's ports."""

"""The AI router (devpynode.ai.v1): contract only until its issue lands."""

"""The AI router (devpynode.ai.v1): models from providers behind one API, with fair shares, caching and usage."""

"""The chat service (devpynode.chat.v1): contract only until its issue lands."""

"""The chat service (devpynode.chat.v1): conversations, members, messages with AI replies and live events."""

"""Auth service: accounts, passwords, tokens, sessions, roles and abuse protection."""

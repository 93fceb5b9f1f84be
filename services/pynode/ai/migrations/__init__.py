"""The AI router's migrations (revision ids ai_NNNN_...)."""

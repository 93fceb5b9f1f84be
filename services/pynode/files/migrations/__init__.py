"""The files service's migrations (revision ids files_NNNN_...)."""

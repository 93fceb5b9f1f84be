"""The files service (devpynode.files.v1): contract only until its issue lands."""

"""The files service (devpynode.files.v1): uploads (streamed or in sessions), quotas, thumbnails and downloads."""

"""Image thumbnails with Pillow, in a thread: bounded pixels, EXIF orientation applied, every metadata dropped.

The pixel count is read from the header before anything is decoded, so a decompression bomb (a small file that
expands to gigapixels) is refused (INVALID_ARGUMENT) without costing the memory it asks for.
"""

from __future__ import annotations

import asyncio
import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from pynode.core.errors import FieldViolation, InvalidArgument

# Raster types Pillow reads that get a thumbnail (SVG and the like never do: they are not decoded here).
THUMBNAILED = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/tiff")
MAX_SOURCE_BYTES = 64 * 1024 * 1024  # larger images are stored without a thumbnail


def _bomb(pixels: int, limit: int) -> InvalidArgument:
    return InvalidArgument(
        f"the image has {pixels} pixels; at most {limit} are accepted",
        [FieldViolation("chunk", f"an image of at most {limit} pixels", "IMAGE_TOO_LARGE")],
        reason="IMAGE_TOO_LARGE",
    )


def render(data: bytes, long_side: int, max_pixels: int) -> bytes | None:
    """A WebP thumbnail of `data`, or None when Pillow cannot read it. Raises InvalidArgument for a bomb."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise _bomb(width * height, max_pixels)
                image.draft("RGB", (long_side, long_side))  # JPEG: decode at a reduced scale
                oriented = ImageOps.exif_transpose(image)
                oriented.thumbnail((long_side, long_side))
                if oriented.mode not in ("RGB", "RGBA"):
                    oriented = oriented.convert("RGBA" if "A" in oriented.getbands() else "RGB")
                clean = Image.new(oriented.mode, oriented.size)
                clean.paste(oriented)  # a new image: no EXIF, ICC, XMP or comments come along
                out = io.BytesIO()
                clean.save(out, "WEBP", quality=80)
                return out.getvalue()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _bomb(0, max_pixels) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return None


async def thumbnail(data: bytes, long_side: int, max_pixels: int) -> bytes | None:
    """`render` off the event loop."""
    return await asyncio.to_thread(render, data, long_side, max_pixels)

"""Image thumbnails with Pillow: bounded pixels and decoded bytes, EXIF orientation applied, every metadata
dropped. `render` blocks: the service runs it on its `files-thumbnails` pool.

The size and mode are read from the header before anything is decoded, so a decompression bomb (a small file
that expands to gigapixels, or to hundreds of megabytes at 16 bits a sample) is refused (INVALID_ARGUMENT)
without costing the memory it asks for. JPEG decodes at a reduced scale (`draft`), and the bound applies to
what will actually be decoded; only the first frame of an animation is ever decoded. How many thumbnails a
process renders at once is the service's to bound (`FilesService`).
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from pynode.core.errors import FieldViolation, InvalidArgument

# Raster types Pillow reads that get a thumbnail (SVG and the like never do: they are not decoded here).
THUMBNAILED = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/tiff")
MAX_SOURCE_BYTES = 64 * 1024 * 1024  # larger images are stored without a thumbnail


def decoded_bytes(image: Image.Image) -> int:
    """What decoding the image's (first) frame takes in memory: Pillow keeps 1 byte a pixel for 1/L/P, 2 for
    the 16-bit modes, and 4 for every other (RGB is stored as 4; a 16-bit RGB PNG becomes RGB)."""
    pixel = 1 if image.mode in ("1", "L", "P") else 2 if image.mode.startswith("I;16") else 4
    return image.size[0] * image.size[1] * pixel


def _too_many_bytes(needed: int, limit: int) -> InvalidArgument:
    return InvalidArgument(
        f"decoding the image would take {needed} bytes; at most {limit} are allowed",
        [FieldViolation("chunk", f"an image that decodes to at most {limit} bytes", "IMAGE_TOO_LARGE")],
        reason="IMAGE_TOO_LARGE",
    )


def _bomb(pixels: int, limit: int) -> InvalidArgument:
    return InvalidArgument(
        f"the image has {pixels} pixels; at most {limit} are accepted",
        [FieldViolation("chunk", f"an image of at most {limit} pixels", "IMAGE_TOO_LARGE")],
        reason="IMAGE_TOO_LARGE",
    )


def render(data: bytes, long_side: int, max_pixels: int, max_bytes: int) -> bytes | None:
    """A WebP thumbnail of `data`, or None when Pillow cannot read it. Raises InvalidArgument for a bomb (more
    than `max_pixels`, or more than `max_bytes` to decode)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise _bomb(width * height, max_pixels)
                image.draft("RGB", (long_side, long_side))  # JPEG: decode at a reduced scale (its size shrinks)
                if decoded_bytes(image) > max_bytes:
                    raise _too_many_bytes(decoded_bytes(image), max_bytes)
                # Reduced in place first, then turned: exif_transpose returns a copy, of the small image only.
                image.thumbnail((long_side, long_side))
                oriented = ImageOps.exif_transpose(image)
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

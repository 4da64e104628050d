"""Safe, fast decoding: size limits before pixels are read, JPEG draft decoding, a memory budget shared
by decoding threads, EXIF orientation, every mode brought to 8-bit RGB. Every failure becomes an
ImageError with a one-line reason."""

from __future__ import annotations

import ctypes
import functools
import io
import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from autotag.types import AutotagError

DEFAULT_MAX_PIXELS = 100_000_000
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF"})

# We enforce our own pixel limit before decoding; PIL's own check would raise a less helpful error.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Pillow logs its own reason for a file it refuses ("More samples per pixel than can be decoded: 9");
# with logging unconfigured Python prints that to stderr beside our one-line error. A handler here
# stops that last-resort print; a program that configures logging (`autotag serve`) still gets it.
logging.getLogger("PIL").addHandler(logging.NullHandler())

try:  # HEIC/HEIF support is optional
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - depends on an optional extra
    pass


class ImageError(AutotagError):
    """This one image cannot be used; the batch goes on."""


# Bytes a decode holds per pixel it decodes at full size, at its peak (measured with ru_maxrss on 4K
# wallpapers, Pillow 13): libwebp's decoder keeps two RGBA canvases and hands Pillow an RGBA copy
# before the picture itself exists (~16 B); PNG and the rest need the picture and one working copy.
DECODE_BYTES_PER_PIXEL = {"WEBP": 16}
DEFAULT_DECODE_BYTES_PER_PIXEL = 8


class DecodeBudget:
    """Bounds the memory that decodes running at once in several threads hold for their full-size
    pictures: a decode waits until its estimated need fits beside the others'. A picture needing more
    than the whole budget decodes alone, so every picture under max_pixels still decodes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(1, int(max_bytes))
        self.in_use = 0
        self.peak = 0  # the most ever held at once (tests and benchmarks read it)
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        need = min(max(0, int(nbytes)), self.max_bytes)
        with self._cond:
            self._cond.wait_for(lambda: self.in_use + need <= self.max_bytes)
            self.in_use += need
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= need
                self._cond.notify_all()


# glibc serves allocations from this size up with their own mappings, handed back to the system when
# freed. By default the cut-off rises to the size of any such block freed (up to 32 MB), after which
# Pillow's 16 MB image blocks come from per-thread heaps that keep their pages: ~200 MB more peak RSS
# on 4K wallpapers with 4 decoding threads (BENCHMARKS.md, "Memory on big inputs").
MMAP_THRESHOLD_BYTES = 4 * 2**20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h


@functools.cache
def return_freed_pictures() -> bool:
    """Have freed full-size pictures go back to the system at once (glibc; elsewhere nothing changes).
    Returns whether the setting took."""
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc: no mallopt
        return False


def decode_cost(format_name: str | None, width: int, height: int) -> int:
    """Estimated peak bytes of decoding a `width` x `height` picture of this format at that size."""
    return width * height * DECODE_BYTES_PER_PIXEL.get(format_name or "", DEFAULT_DECODE_BYTES_PER_PIXEL)


def load_source(source: str) -> bytes:
    """Read the bytes of a local path or an fsspec URL."""
    if "://" in source and not source.startswith("file://"):
        try:
            import fsspec
        except ImportError as exc:
            raise ImageError("reading URLs needs fsspec: pip install 'autotag[urls]'") from exc
        try:
            with fsspec.open(source, "rb") as fh:
                return fh.read()
        except ImportError as exc:  # fsspec's HTTP needs requests + aiohttp, the `urls` extra
            raise ImageError(f"reading {source.split('://')[0]} URLs needs more packages: "
                             f"pip install 'autotag[urls]' ({exc})") from exc
        except FileNotFoundError as exc:
            raise ImageError("nothing at that URL (not found)") from exc
        except Exception as exc:  # noqa: BLE001 - any transport failure is one line for the user
            raise ImageError(f"cannot read: {type(exc).__name__}: {exc}") from exc
    path = Path(source.removeprefix("file://"))
    try:
        return path.read_bytes()
    except IsADirectoryError as exc:
        raise ImageError("is a folder, not an image") from exc
    except FileNotFoundError as exc:
        raise ImageError("no such file") from exc
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror or exc}") from exc


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits rather than clipping everything above 255 to white
        im = im.point(lambda v: v * (1 / 256)).convert("L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im).convert("RGB")
    return im.convert("RGB") if im.mode != "RGB" else im


def decode_image(
    data: bytes, *, min_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode image bytes to an upright 8-bit RGB PIL image (see decode_with_info)."""
    return decode_with_info(data, min_side=min_side, max_pixels=max_pixels)[0]


def decode_with_info(
    data: bytes, *, min_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, min_long_side: int = 0
) -> tuple[Image.Image, dict[str, object]]:
    """Decode image bytes to an upright 8-bit RGB PIL image, plus the file's format and full size.

    min_side: if given, JPEGs are decoded at a reduced scale (DCT draft) that keeps the shorter
    side at least this long, which is several times faster for large photos.
    min_long_side: with min_side, also keep the longer side at least this long.
    """
    with decoded(data, min_side=min_side, max_pixels=max_pixels, min_long_side=min_long_side) as (im, info):
        return im, info


@contextmanager
def decoded(
    data: bytes,
    *,
    min_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_long_side: int = 0,
    budget: DecodeBudget | None = None,
) -> Iterator[tuple[Image.Image, dict[str, object]]]:
    """As decode_with_info, for use in a `with` block that makes what it needs from the picture:
    `budget`, shared by decoding threads, counts the picture's memory from before it is decoded
    until the block ends, so their full-size pictures stay within it together."""
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageError("not an image or an unsupported format") from exc
    except Exception as exc:  # noqa: BLE001 - decoder bugs must not kill the batch
        raise ImageError(f"cannot open image: {exc}") from exc
    if im.format not in SUPPORTED_FORMATS:
        raise ImageError(f"unsupported image format {im.format}")
    width, height = im.size
    if width * height > max_pixels:
        raise ImageError(
            f"image is {width}x{height} ({width * height / 1e6:.0f} MP), over the limit of "
            f"{max_pixels / 1e6:.0f} MP (raise it with --max-pixels)"
        )
    info = {"format": im.format, "width": width, "height": height, "size_bytes": len(data)}
    try:
        scale = max(min_side / min(width, height), min_long_side / max(width, height)) if min_side else 1.0
        if scale < 0.5 and im.format in ("JPEG", "MPO"):
            im.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
    except Exception as exc:  # noqa: BLE001 - a corrupt header can surface here
        raise _corrupt(exc) from exc
    # im.size is now what will be decoded (a JPEG draft is smaller than the file)
    with budget.hold(decode_cost(im.format, *im.size)) if budget else nullcontext():
        try:
            im.seek(0)  # first frame of animations
            im.load()
            ImageOps.exif_transpose(im, in_place=True)  # in place: no copy of an unturned picture
            rgb = _to_rgb(im)
        except Exception as exc:  # noqa: BLE001 - truncated/corrupt data surfaces here
            raise _corrupt(exc) from exc
        del im
        yield rgb, info


def _corrupt(exc: Exception) -> ImageError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ImageError(f"corrupt or truncated image: {reason}")

"""Write tags into image files as keywords other software reads: XMP dc:subject and IPTC Keywords.

JPEG gets an APP1 XMP packet and an APP13 Photoshop/IPTC block; PNG gets an iTXt
"XML:com.adobe.xmp" chunk (PNG has no IPTC home). Any other format, or `sidecar=True`, gets an
sidecar next to the image (photo.jpg -> photo.jpg.xmp). Existing keywords are kept unless
`replace=True`, and every other piece of metadata (EXIF, other XMP properties, other IPTC fields,
ICC profiles) is carried over untouched.

The image itself is never put at risk: the new file is written beside the old one, decoded with
Pillow and compared pixel for pixel with the original, and only then moved over it with os.replace.
The format is recognised from the file's bytes, not its name.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from xml.etree import ElementTree as ET

from autotag.types import AutotagError

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "photoshop": "http://ns.adobe.com/photoshop/1.0/",
    "tiff": "http://ns.adobe.com/tiff/1.0/",
    "exif": "http://ns.adobe.com/exif/1.0/",
    "xmpMM": "http://ns.adobe.com/xap/1.0/mm/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)

XMP_APP1_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
PHOTOSHOP_HEADER = b"Photoshop 3.0\x00"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_XMP_KEYWORD = b"XML:com.adobe.xmp"
IRB_IPTC, IRB_IPTC_DIGEST = 0x0404, 0x0425
IPTC_UTF8 = b"\x1b%G"  # ISO 2022 escape for UTF-8 in dataset 1:90
IPTC_KEYWORD_MAX_BYTES = 64  # the IIM limit for dataset 2:25
MAX_SEGMENT = 65533  # payload bytes a JPEG segment can hold
XMP_PADDING = 2048  # room for in-place edits by other tools, as the XMP spec recommends

_RDF = "{" + NS["rdf"] + "}"
_DC_SUBJECT = "{" + NS["dc"] + "}subject"


def sidecar_path(path: str | Path) -> Path:
    """photo.jpg -> photo.jpg.xmp (the darktable/digiKam naming; exiftool reads it too). Adobe's
    photo.xmp would make photo.jpg and photo.png share one sidecar and mix their keywords."""
    path = Path(path)
    return path.with_name(path.name + ".xmp")


# ------------------------------------------------------------------------------------------ helpers
def _clean(keywords: Iterable[str]) -> list[str]:
    """Strip, drop blanks and case-insensitive duplicates, keep first spelling and order."""
    seen: set[str] = set()
    out = []
    for keyword in keywords:
        keyword = " ".join(str(keyword).split())
        if keyword and keyword.casefold() not in seen:
            seen.add(keyword.casefold())
            out.append(keyword)
    return out


def _file_kind(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == PNG_SIGNATURE:
        return "png"
    return "other"


# ------------------------------------------------------------------------------------------ XMP
def _xmp_keywords(packet: bytes | None) -> list[str]:
    if not packet:
        return []
    root = _parse_xmp(packet)
    return [li.text or "" for subject in root.iter(_DC_SUBJECT) for li in subject.iter(_RDF + "li")]


def _parse_xmp(packet: bytes) -> ET.Element:
    import io

    root = None
    try:
        for event, item in ET.iterparse(io.BytesIO(packet.strip(b"\x00 \r\n\t")), events=("start-ns", "start")):
            if event == "start-ns":
                prefix, uri = item
                # Keep the file's own prefixes on rewrite (ElementTree would say ns0:, ns1:, ...).
                if prefix and not re.fullmatch(r"ns\d+", prefix):
                    ET.register_namespace(prefix, uri)
            elif root is None:
                root = item
    except ET.ParseError as exc:
        raise AutotagError(f"the file's existing XMP is not valid XML ({exc}); fix or remove it first") from exc
    if root is None:
        raise AutotagError("the file's existing XMP is empty; fix or remove it first")
    return root


def _xmp_with_keywords(packet: bytes | None, keywords: list[str]) -> bytes:
    """A full XMP packet: the old one with dc:subject set to `keywords`, or a new one."""
    if packet:
        root = _parse_xmp(packet)
        rdf = root if root.tag == _RDF + "RDF" else root.find(_RDF + "RDF")
        if rdf is None:
            raise AutotagError("the file's existing XMP has no rdf:RDF element; fix or remove it first")
    else:
        root = ET.Element("{" + NS["x"] + "}xmpmeta")
        rdf = ET.SubElement(root, _RDF + "RDF")
    descriptions = rdf.findall(_RDF + "Description")
    for description in descriptions:
        for subject in description.findall(_DC_SUBJECT):
            description.remove(subject)
    if not descriptions:
        descriptions = [ET.SubElement(rdf, _RDF + "Description", {_RDF + "about": ""})]
    subject = ET.SubElement(descriptions[0], _DC_SUBJECT)
    bag = ET.SubElement(subject, _RDF + "Bag")
    for keyword in keywords:
        ET.SubElement(bag, _RDF + "li").text = keyword
    ET.indent(root, space=" ")
    body = ET.tostring(root, encoding="unicode")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        + body
        + "\n"
        + (" " * 99 + "\n") * (XMP_PADDING // 100)
        + '<?xpacket end="w"?>'
    ).encode("utf-8")


# ------------------------------------------------------------------------------------------ IPTC
def _iptc_datasets(data: bytes) -> list[tuple[int, int, bytes]]:
    out, pos = [], 0
    while pos + 5 <= len(data) and data[pos] == 0x1C:
        record, dataset, size = data[pos + 1], data[pos + 2], struct.unpack(">H", data[pos + 3 : pos + 5])[0]
        if size & 0x8000:  # extended-length datasets never hold keywords; stop rather than guess
            break
        out.append((record, dataset, data[pos + 5 : pos + 5 + size]))
        pos += 5 + size
    return out


def _iptc_keywords(data: bytes | None) -> list[str]:
    if not data:
        return []
    datasets = _iptc_datasets(data)
    utf8 = any(r == 1 and d == 90 and v == IPTC_UTF8 for r, d, v in datasets)
    return [v.decode("utf-8" if utf8 else "latin-1", "replace") for r, d, v in datasets if (r, d) == (2, 25)]


def _truncate_utf8(text: str, limit: int) -> bytes:
    raw = text.encode("utf-8")
    return raw if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore").encode("utf-8")


def _iptc_with_keywords(data: bytes | None, keywords: list[str]) -> bytes:
    kept = [(r, d, v) for r, d, v in _iptc_datasets(data or b"") if (r, d) not in ((2, 25), (1, 90), (2, 0))]
    kept += [(1, 90, IPTC_UTF8), (2, 0, b"\x00\x04")]
    kept += [(2, 25, _truncate_utf8(k, IPTC_KEYWORD_MAX_BYTES)) for k in keywords]
    kept.sort(key=lambda item: (item[0], item[1]))  # stable: keyword order survives
    return b"".join(b"\x1c" + bytes((r, d)) + struct.pack(">H", len(v)) + v for r, d, v in kept)


def _irb_resources(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Photoshop image resource blocks: (id, pascal-name bytes incl. padding, payload)."""
    out, pos = [], 0
    while pos + 12 <= len(data) and data[pos : pos + 4] == b"8BIM":
        resource_id = struct.unpack(">H", data[pos + 4 : pos + 6])[0]
        name_len = data[pos + 6]
        name_end = pos + 6 + 1 + name_len
        name_end += (name_end - (pos + 6)) % 2  # name field is padded to an even size
        size = struct.unpack(">I", data[name_end : name_end + 4])[0]
        payload = data[name_end + 4 : name_end + 4 + size]
        out.append((resource_id, data[pos + 6 : name_end], payload))
        pos = name_end + 4 + size + (size % 2)
    return out


def _irb_bytes(resources: list[tuple[int, bytes, bytes]]) -> bytes:
    parts = []
    for resource_id, name, payload in resources:
        parts.append(b"8BIM" + struct.pack(">H", resource_id) + name + struct.pack(">I", len(payload)) + payload)
        if len(payload) % 2:
            parts.append(b"\x00")
    return b"".join(parts)


# ------------------------------------------------------------------------------------------ JPEG
def _jpeg_segments(data: bytes, path: Path) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split a JPEG into its header segments (marker, payload) and the rest from SOS on."""
    if data[:2] != b"\xff\xd8":
        raise AutotagError(f"{path}: not a JPEG file")
    segments, pos = [], 2
    while True:
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise AutotagError(f"{path}: damaged JPEG (bad marker at byte {pos}); keywords not written")
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: everything from here is image data
            return segments, data[pos:]
        size = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if size < 2 or pos + 2 + size > len(data):
            raise AutotagError(f"{path}: damaged JPEG (segment overruns the file); keywords not written")
        segments.append((marker, data[pos + 4 : pos + 2 + size]))
        pos += 2 + size


def _segment(marker: int, payload: bytes) -> bytes:
    if len(payload) > MAX_SEGMENT:
        raise AutotagError(f"keyword metadata of {len(payload)} bytes does not fit a JPEG segment; use --sidecar")
    return b"\xff" + bytes((marker,)) + struct.pack(">H", len(payload) + 2) + payload


def _jpeg_metadata(segments: list[tuple[int, bytes]]) -> tuple[bytes | None, bytes]:
    xmp = next((p[len(XMP_APP1_HEADER) :] for m, p in segments if m == 0xE1 and p.startswith(XMP_APP1_HEADER)), None)
    irb = b"".join(p[len(PHOTOSHOP_HEADER) :] for m, p in segments if m == 0xED and p.startswith(PHOTOSHOP_HEADER))
    return xmp, irb


def _jpeg_with_keywords(data: bytes, keywords: list[str], replace: bool, path: Path) -> tuple[bytes, list[str]]:
    segments, scan = _jpeg_segments(data, path)
    old_xmp, old_irb = _jpeg_metadata(segments)
    resources = _irb_resources(old_irb)
    old_iptc = next((payload for rid, _, payload in resources if rid == IRB_IPTC), None)
    final = _clean(keywords if replace else [*_xmp_keywords(old_xmp), *_iptc_keywords(old_iptc), *keywords])

    iptc = _iptc_with_keywords(old_iptc, final)
    others = [r for r in resources if r[0] not in (IRB_IPTC, IRB_IPTC_DIGEST)]
    # Photoshop and exiftool compare this digest to tell whether IPTC was edited behind their back.
    irb = _irb_bytes(
        [*others, (IRB_IPTC, b"\x00\x00", iptc), (IRB_IPTC_DIGEST, b"\x00\x00", hashlib.md5(iptc).digest())]
    )
    new_segments = [
        _segment(0xE1, XMP_APP1_HEADER + _xmp_with_keywords(old_xmp, final)),
        _segment(0xED, PHOTOSHOP_HEADER + irb),
    ]
    kept = [
        (m, p)
        for m, p in segments
        if not (m == 0xE1 and p.startswith(XMP_APP1_HEADER)) and not (m == 0xED and p.startswith(PHOTOSHOP_HEADER))
    ]
    # New metadata goes after the leading JFIF/EXIF segments, where readers expect it.
    at = 0
    while at < len(kept) and (kept[at][0] == 0xE0 or (kept[at][0] == 0xE1 and kept[at][1].startswith(b"Exif\x00"))):
        at += 1
    head = [_segment(m, p) for m, p in kept[:at]] + new_segments + [_segment(m, p) for m, p in kept[at:]]
    return b"\xff\xd8" + b"".join(head) + scan, final


# ------------------------------------------------------------------------------------------ PNG
def _png_chunks(data: bytes, path: Path) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos + 12 <= len(data):
        size = struct.unpack(">I", data[pos : pos + 4])[0]
        kind = data[pos + 4 : pos + 8]
        if pos + 12 + size > len(data):
            raise AutotagError(f"{path}: damaged PNG (chunk overruns the file); keywords not written")
        chunks.append((kind, data[pos + 8 : pos + 8 + size]))
        pos += 12 + size
        if kind == b"IEND":
            return chunks
    raise AutotagError(f"{path}: damaged PNG (no IEND chunk); keywords not written")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_xmp(kind: bytes, payload: bytes) -> bytes | None:
    """The XMP text of an iTXt XML:com.adobe.xmp chunk, else None."""
    if kind != b"iTXt" or not payload.startswith(PNG_XMP_KEYWORD + b"\x00"):
        return None
    rest = payload[len(PNG_XMP_KEYWORD) + 1 :]
    compressed, rest = rest[0], rest[2:]
    _language, rest = rest.split(b"\x00", 1)
    _translated, text = rest.split(b"\x00", 1)
    return zlib.decompress(text) if compressed else text


def _png_with_keywords(data: bytes, keywords: list[str], replace: bool, path: Path) -> tuple[bytes, list[str]]:
    chunks = _png_chunks(data, path)
    old_xmp = next((x for k, p in chunks if (x := _png_xmp(k, p)) is not None), None)
    final = _clean(keywords if replace else [*_xmp_keywords(old_xmp), *keywords])
    itxt = PNG_XMP_KEYWORD + b"\x00\x00\x00\x00\x00" + _xmp_with_keywords(old_xmp, final)
    kept = [(k, p) for k, p in chunks if _png_xmp(k, p) is None]
    first_data = next(i for i, (k, _) in enumerate(kept) if k in (b"IDAT", b"IEND"))
    kept.insert(first_data, (b"iTXt", itxt))
    return PNG_SIGNATURE + b"".join(_png_chunk(k, p) for k, p in kept), final


# ------------------------------------------------------------------------------------------ public
def _pixels(source: Path | bytes) -> tuple[str, tuple[int, int], bytes]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        image.load()
        return image.mode, image.size, image.tobytes()


def read_keywords(path: str | Path) -> list[str]:
    """Keywords already in the file (XMP and IPTC, merged) or in its sidecar when the file has none."""
    path = Path(path)
    data = path.read_bytes()
    kind = _file_kind(data)
    found: list[str] = []
    if kind == "jpeg":
        segments, _ = _jpeg_segments(data, path)
        xmp, irb = _jpeg_metadata(segments)
        iptc = next((p for rid, _, p in _irb_resources(irb) if rid == IRB_IPTC), None)
        found = [*_xmp_keywords(xmp), *_iptc_keywords(iptc)]
    elif kind == "png":
        found = next((_xmp_keywords(x) for k, p in _png_chunks(data, path) if (x := _png_xmp(k, p)) is not None), [])
    sidecar = sidecar_path(path)
    if not found and sidecar.is_file():
        found = _xmp_keywords(sidecar.read_bytes())
    return _clean(found)


def write_keywords(path: str | Path, keywords: Iterable[str], *, sidecar: bool = False, replace: bool = False) -> Path:
    """Write `keywords` as XMP dc:subject (+ IPTC Keywords in JPEG); returns the file written.

    Existing keywords are kept (new ones appended, no duplicates) unless `replace` is true.
    """
    path = Path(path)
    if not path.is_file():
        raise AutotagError(f"{path}: no such file; keywords not written")
    wanted = _clean(keywords)
    data = path.read_bytes()
    kind = "other" if sidecar else _file_kind(data)
    if kind == "other":
        target = sidecar_path(path)
        old = target.read_bytes() if target.is_file() else None
        final = _clean(wanted if replace else [*_xmp_keywords(old), *wanted])
        _atomic_write(target, _xmp_with_keywords(old, final), like=target if old is not None else None)
        return target

    new_data, before = _embed(data, wanted, replace, str(path))

    def verify(written: bytes) -> None:
        if _pixels(written) != before:
            raise AutotagError(f"{path}: rewriting changed the decoded image; keywords not written, file untouched")

    _atomic_write(path, new_data, like=path, verify=verify)
    return path


def embed_keywords(data: bytes, keywords: Iterable[str], *, replace: bool = False, name: str = "image") -> bytes:
    """The same image bytes with `keywords` embedded (JPEG or PNG), checked to decode to the same pixels.

    For a service that hands back a tagged copy of an upload; `write_keywords` does this for files.
    """
    new_data, before = _embed(data, _clean(keywords), replace, name)
    try:
        same = _pixels(new_data) == before
    except Exception as exc:  # noqa: BLE001
        raise AutotagError(f"{name}: the rewritten image does not decode ({exc}); keywords not written") from exc
    if not same:
        raise AutotagError(f"{name}: rewriting changed the decoded image; keywords not written")
    return new_data


def _embed(data: bytes, wanted: list[str], replace: bool, name: str) -> tuple[bytes, bytes]:
    """The rewritten bytes and the original's decoded pixels; the caller checks the result against them
    (in memory for uploads, on the written temporary file for files)."""
    kind = _file_kind(data)
    if kind == "other":
        raise AutotagError(f"{name}: only JPEG and PNG can hold keywords inside the file; write an .xmp sidecar")
    rewrite = _jpeg_with_keywords if kind == "jpeg" else _png_with_keywords
    new_data, _ = rewrite(data, wanted, replace, Path(name))
    try:
        before = _pixels(data)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds
        raise AutotagError(f"{name}: the image does not decode ({exc}); keywords not written") from exc
    return new_data, before


def _atomic_write(target: Path, data: bytes, like: Path | None = None, verify=None) -> None:
    """Write to a temporary file in the same folder, check it, then move it over `target`."""
    try:
        handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise AutotagError(f"{target}: cannot write in {target.parent} ({exc.strerror}); keywords not written") from exc
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if verify is not None:
            try:
                verify(temp.read_bytes())
            except AutotagError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise AutotagError(f"{target}: the rewritten file does not decode ({exc}); file untouched") from exc
        if like is not None:
            shutil.copymode(like, temp)
        else:  # mkstemp makes 0600; a new sidecar gets the usual permissions
            umask = os.umask(0)
            os.umask(umask)
            temp.chmod(0o666 & ~umask)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


__all__ = ["embed_keywords", "read_keywords", "sidecar_path", "write_keywords"]

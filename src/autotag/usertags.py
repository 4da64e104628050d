"""Tags people type: one parser for what they type (CLI flags, form fields, audit input) and one normal
form to compare tags by (the user-tag head's vocabulary, the audit, vocabulary look-ups).

    parse_user_tags("cat, #Beach; sunset\\ncat")  -> ["cat", "Beach", "sunset"]
    normalise_user_tag(" #Beach_Day ")            -> "beach day"
    loose_tag_key("#Street_Photography")          -> "streetphotography"
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SEPARATORS = re.compile(r"[,;\n]")
MAX_TAGS = 100  # a form field or flag with more is spam or a mistake, not tags
MAX_TAG_CHARS = 200


def normalise_user_tag(tag: str) -> str:
    """The form user tags are compared and counted in: trimmed, no leading '#', '_' read as a space,
    inner spaces collapsed, lower case ("#Street_Photo " -> "street photo")."""
    return " ".join(str(tag).strip().lstrip("#").replace("_", " ").split()).lower()


def loose_tag_key(tag: str) -> str:
    """A looser key for matching a typed tag to a vocabulary name or alias: also ignores spaces, '_' and
    '-' (people type hashtags as #streetphotography, #street_photography or "street photography")."""
    return re.sub(r"[\s_\-#]+", "", str(tag).lower())


def parse_user_tags(text: str | Iterable[str] | None) -> list[str]:
    """Tags from what a person typed: split on commas, semicolons and newlines (a list is taken as already
    split), a leading '#' dropped, blanks dropped, repeats (same normal form) dropped keeping the first
    spelling; at most MAX_TAGS tags of MAX_TAG_CHARS characters."""
    if not text:
        return []
    pieces = SEPARATORS.split(text) if isinstance(text, str) else [str(t) for t in text]
    seen: dict[str, str] = {}
    for piece in pieces:
        tag = " ".join(piece.strip().lstrip("#").split())[:MAX_TAG_CHARS]
        if tag:
            seen.setdefault(normalise_user_tag(tag), tag)
    return list(seen.values())[:MAX_TAGS]

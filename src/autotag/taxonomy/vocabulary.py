"""Target vocabularies: the tags a platform wants, in its own words, each tied to WordNet meanings.

A vocabulary file is YAML (or TOML) shaped like this:

    name: hashtags
    other: other              # the bucket for source labels that fit no tag (optional)
    tags:
      sport:
        synsets: [sports_equipment.n.01, athlete.n.01]   # WordNet names or ids like n04254680
        keywords: [ball, racket]                          # words that name the tag in labels
        aliases: [sports, sportlife]                      # other spellings users type
        description: sports, games and athletes           # helps the text-similarity matcher
      cats: [domestic_cat.n.01]                           # short form: just the synsets

Nothing here needs WordNet: synset names are kept as strings and resolved by the mapper.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from autotag.types import AutotagError
from autotag.usertags import loose_tag_key

_SYNSET_NAME = re.compile(r"^[\w'.\-]+\.[nvasr]\.\d+$")
_SYNSET_ID = re.compile(r"^[nvasr]\d{8}$")
_TAG_KEYS = {"synsets", "keywords", "aliases", "description"}


@dataclass(frozen=True)
class TargetTag:
    name: str
    synsets: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    description: str = ""

    def words(self) -> tuple[str, ...]:
        """The tag's own name, aliases and keywords, lower-cased, for exact-word matching."""
        return tuple(dict.fromkeys(w.lower().replace("_", " ") for w in (self.name, *self.aliases, *self.keywords)))

    def text(self) -> str:
        """A short phrase describing the tag, for the text-embedding matcher."""
        parts = [self.name.replace("_", " ")]
        if self.description:
            parts.append(self.description)
        extra = [w for w in (*self.aliases, *self.keywords) if w.lower() != self.name.lower()]
        if extra:
            parts.append(", ".join(extra))
        return ": ".join(parts[:2]) + (f" ({parts[2]})" if len(parts) > 2 else "")


@dataclass(frozen=True)
class Vocabulary:
    name: str
    tags: tuple[TargetTag, ...]
    other: str = "other"
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tags]

    def tag(self, name: str) -> TargetTag:
        for t in self.tags:
            if t.name == name:
                return t
        raise AutotagError(f"vocabulary {self.name!r} has no tag {name!r}; its tags: {', '.join(self.names)}")

    def resolve(self, word: str) -> str | None:
        """A tag name, alias or '#hashtag' as typed by a person -> the tag's name (or None)."""
        key = loose_tag_key(word)
        if key == loose_tag_key(self.other):
            return self.other
        for t in self.tags:
            if key == loose_tag_key(t.name) or key in {loose_tag_key(a) for a in t.aliases}:
                return t.name
        return None


def _as_tuple(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise AutotagError(f"{where} must be a list of strings; got {value!r}")
    return tuple(v.strip() for v in value if v.strip())


def _parse_tag(name: str, spec: Any, where: str) -> TargetTag:
    if spec is None or isinstance(spec, (list, str)):
        spec = {"synsets": spec}
    if not isinstance(spec, dict):
        raise AutotagError(f"{where}: tag {name!r} must be a list of synsets or a mapping with {sorted(_TAG_KEYS)}")
    unknown = set(spec) - _TAG_KEYS
    if unknown:
        raise AutotagError(f"{where}: tag {name!r} has unknown keys {sorted(unknown)}; valid: {sorted(_TAG_KEYS)}")
    synsets = _as_tuple(spec.get("synsets"), f"{where}: {name}.synsets")
    for s in synsets:
        if not (_SYNSET_NAME.match(s) or _SYNSET_ID.match(s)):
            raise AutotagError(
                f"{where}: tag {name!r}: {s!r} is not a WordNet synset (write it like dog.n.01 or n02084071)"
            )
    description = spec.get("description") or ""
    if not isinstance(description, str):
        raise AutotagError(f"{where}: {name}.description must be a string")
    return TargetTag(
        name=name,
        synsets=synsets,
        keywords=_as_tuple(spec.get("keywords"), f"{where}: {name}.keywords"),
        aliases=_as_tuple(spec.get("aliases"), f"{where}: {name}.aliases"),
        description=description.strip(),
    )


def parse_vocabulary(raw: Any, where: str = "vocabulary") -> Vocabulary:
    if not isinstance(raw, dict) or not isinstance(raw.get("tags"), dict) or not raw["tags"]:
        raise AutotagError(f"{where}: expected a mapping with a non-empty 'tags:' section")
    tags = tuple(_parse_tag(str(name), spec, where) for name, spec in raw["tags"].items())
    other = str(raw.get("other") or "other")
    if other in {t.name for t in tags}:
        raise AutotagError(f"{where}: the 'other' bucket {other!r} must not also be a tag")
    extra = {k: v for k, v in raw.items() if k not in {"name", "tags", "other"}}
    return Vocabulary(name=str(raw.get("name") or Path(where).stem), tags=tags, other=other, path=where, extra=extra)


def read_structured(path: Path) -> Any:
    """A YAML, JSON or TOML file -> Python data, with one-line errors."""
    if not path.is_file():
        raise AutotagError(f"file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            return tomllib.loads(text)
        import yaml  # JSON is YAML too

        return yaml.safe_load(text)
    except Exception as exc:  # yaml and toml raise their own error classes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AutotagError(f"{path} is not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {first}") from exc


def load_vocabulary(path: str | Path | None = None) -> Vocabulary:
    """Load a vocabulary file; None or 'hashtags' gives the shipped photo-hashtag vocabulary."""
    if path is None or str(path) in {"hashtags", "hashtags.yaml"} and not Path(str(path)).is_file():
        text = resources.files("autotag.taxonomy").joinpath("hashtags.yaml").read_text(encoding="utf-8")
        import yaml

        return parse_vocabulary(yaml.safe_load(text), "hashtags.yaml")
    p = Path(path)
    return parse_vocabulary(read_structured(p), str(p))

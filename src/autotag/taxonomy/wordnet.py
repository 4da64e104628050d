"""WordNet 3.0 through NLTK's reader, over the files of Debian's `wordnet-base` package.

NLTK wants the database under <dir>/corpora/wordnet together with a `lexnames` file, which Debian
does not ship; we copy the Debian files into a folder of our cache (NLTK 3.10's path sandbox refuses
symlinks that lead outside its data roots), write `lexnames` there and add the folder to NLTK's path.
"""

from __future__ import annotations

import functools
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from autotag.config import load_settings
from autotag.types import AutotagError

WORDNET_SOURCE = Path(os.environ.get("AUTOTAG_WORDNET_DIR", "/usr/share/wordnet"))
# The 45 lexicographer files of WordNet 3.0, in their numbered order (lexnames(5WN)).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def wordnet_available() -> bool:
    return (WORDNET_SOURCE / "data.noun").is_file() and (WORDNET_SOURCE / "index.sense").is_file()


def _prepare(root: Path) -> Path:
    folder = root / "corpora" / "wordnet"
    folder.mkdir(parents=True, exist_ok=True)
    for src in WORDNET_SOURCE.iterdir():
        if src.is_file() and not (folder / src.name).exists():
            tmp = folder / f".{src.name}.tmp"
            shutil.copyfile(src, tmp)
            tmp.replace(folder / src.name)
    lexnames = folder / "lexnames"
    if not lexnames.exists():
        lines = [f"{i:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}" for i, name in enumerate(LEXNAMES)]
        lexnames.write_text("\n".join(lines) + "\n")
    return folder


@functools.cache
def wordnet() -> Any:
    """NLTK's WordNetCorpusReader over WordNet 3.0 (cached per process)."""
    if not wordnet_available():
        raise AutotagError(
            f"WordNet 3.0 not found in {WORDNET_SOURCE}: install the Debian packages wordnet-base and "
            "wordnet-sense-index (apt-get install wordnet-base wordnet-sense-index)"
        )
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = load_settings().cache_dir / "nltk_data"
    folder = _prepare(root)
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    with warnings.catch_warnings():  # only the Open Multilingual Wordnet has them; we use English 3.0
        warnings.filterwarnings("ignore", message="The multilingual functions are not available")
        return WordNetCorpusReader(str(folder), None)


def synset_from_wnid(wnid: str) -> Any:
    """'n02123045' -> Synset('tabby.n.01')."""
    return wordnet().synset_from_pos_and_offset(wnid[0], int(wnid[1:]))


def wnid(synset: Any) -> str:
    return f"{synset.pos()}{synset.offset():08d}"

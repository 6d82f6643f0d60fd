"""Emotional speech corpora -> one table of utterances, by each corpus's standard file naming.

Every loader returns `Utterance`s with one shared label taxonomy: the eight RAVDESS names. The mapping
from each corpus's own labels is the table below (also in docs/labels.md); labels a corpus has that
the taxonomy lacks (EmoDB's boredom) are skipped and counted.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]

# corpus -> {the corpus's own code: our label or None (skipped)}
LABEL_MAP: dict[str, dict[str, str | None]] = {
    "ravdess": {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
                "07": "disgust", "08": "surprised"},
    "tess": {"neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry", "fear": "fearful",
             "disgust": "disgust", "ps": "surprised"},
    "cremad": {"NEU": "neutral", "HAP": "happy", "SAD": "sad", "ANG": "angry", "FEA": "fearful",
               "DIS": "disgust"},
    "savee": {"n": "neutral", "h": "happy", "sa": "sad", "a": "angry", "f": "fearful", "d": "disgust",
              "su": "surprised"},
    "emodb": {"N": "neutral", "F": "happy", "T": "sad", "W": "angry", "A": "fearful", "E": "disgust",
              "L": None},  # L = Langeweile (boredom): no counterpart in the taxonomy
    # nEMO (Polish): no calm, no disgust
    "nemo": {"neutral": "neutral", "happiness": "happy", "sadness": "sad", "anger": "angry", "fear": "fearful",
             "surprised": "surprised"},
    # URDU (talk-show clips): four classes only
    "urdu": {"N": "neutral", "H": "happy", "S": "sad", "A": "angry"},
}

# what a model card and a model's metadata say about each corpus it was trained on
LICENCES = {"ravdess": "RAVDESS (Livingstone & Russo 2018), CC BY-NC-SA 4.0",
            "tess": "TESS (Dupuis & Pichora-Fuller 2010), CC BY-NC-ND 4.0",
            "nemo": "nEMO (Christop 2024), CC BY-NC-SA 4.0",
            "urdu": "URDU (Latif et al. 2018), research use only"}

EMODB_MALE = {"03", "10", "11", "12", "15"}  # the other five speakers (08, 09, 13, 14, 16) are female
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}


def default_data_dir() -> Path:
    """Where the corpora are: $SER_DATA, else ../shared/data next to the project."""
    return Path(os.environ.get("SER_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))


@dataclass(frozen=True)
class Utterance:
    path: str
    corpus: str
    speaker: str  # unique across corpora: "<corpus>-<id>"
    gender: str  # "male", "female" or "unknown"
    label: str


def _audio_files(root: Path):
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def load_ravdess(root: Path) -> list[Utterance]:
    """03-01-EE-II-SS-RR-AA: modality 03 (audio-only), vocal channel 01 (speech), EE emotion, AA actor."""
    out = []
    for p in _audio_files(root):
        m = re.fullmatch(r"03-01-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)", p.stem)
        if not m or m.group(1) not in LABEL_MAP["ravdess"]:
            continue
        actor = int(m.group(5))
        out.append(Utterance(str(p), "ravdess", f"ravdess-{actor:02d}", "male" if actor % 2 else "female",
                             LABEL_MAP["ravdess"][m.group(1)]))
    return out


def load_tess(root: Path) -> list[Utterance]:
    """OAF_<word>_<emotion> / YAF_<word>_<emotion>: two female speakers."""
    out = []
    for p in _audio_files(root):
        m = re.fullmatch(r"(OAF|YAF)_([A-Za-z]+)_([A-Za-z]+)", p.stem)
        if not m:
            continue
        label = LABEL_MAP["tess"].get(m.group(3).lower())
        if label:
            out.append(Utterance(str(p), "tess", f"tess-{m.group(1)}", "female", label))
    return out


def load_cremad(root: Path) -> list[Utterance]:
    """1001_DFA_ANG_XX: actor 1001-1091, sentence, emotion, level. Gender is not in the name."""
    out = []
    for p in _audio_files(root):
        m = re.fullmatch(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})", p.stem)
        if m and LABEL_MAP["cremad"].get(m.group(3)):
            out.append(Utterance(str(p), "cremad", f"cremad-{m.group(1)}", "unknown",
                                 LABEL_MAP["cremad"][m.group(3)]))
    return out


def load_savee(root: Path) -> list[Utterance]:
    """DC_a01 (or DC/a01): speakers DC, JE, JK, KL (all male); a, d, f, h, n, sa, su + number."""
    out = []
    for p in _audio_files(root):
        m = re.fullmatch(r"(DC|JE|JK|KL)_([a-z]{1,2})(\d\d)", p.stem)
        speaker, code = (m.group(1), m.group(2)) if m else (p.parent.name, None)
        if not m:
            m2 = re.fullmatch(r"([a-z]{1,2})(\d\d)", p.stem)
            if not m2 or speaker not in ("DC", "JE", "JK", "KL"):
                continue
            code = m2.group(1)
        label = LABEL_MAP["savee"].get(code)
        if label:
            out.append(Utterance(str(p), "savee", f"savee-{speaker}", "male", label))
    return out


def load_emodb(root: Path) -> list[Utterance]:
    """03a01Fa: speaker (2 digits), text (a01..b10), emotion letter (German initial), version."""
    out = []
    for p in _audio_files(root):
        m = re.fullmatch(r"(\d\d)([ab]\d\d)([WLEAFTN])([a-z])", p.stem)
        if m and LABEL_MAP["emodb"].get(m.group(3)):
            out.append(Utterance(str(p), "emodb", f"emodb-{m.group(1)}",
                                 "male" if m.group(1) in EMODB_MALE else "female", LABEL_MAP["emodb"][m.group(3)]))
    return out


def manifest_genders(root: Path) -> dict[str, str]:
    """speaker id -> gender from the data set's manifest.csv (next to the corpus folders), if any."""
    import csv

    path = root.parent / "manifest.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["speaker"]: row["gender"] for row in csv.DictReader(f)}


NEMO_MALE = {"KS0", "MP0", "SM0", "TP0", "WR0"}  # the corpus's data.tsv; the other four actors are women


def load_nemo(root: Path) -> list[Utterance]:
    """<SPEAKER>_<emotion>_<n>, e.g. KS0_anger_12: nine Polish actors."""
    genders = manifest_genders(root)
    out = []
    for p in _audio_files(root):
        m = re.fullmatch(r"([A-Z]{2}\d)_([a-z]+)_(\d+)", p.stem)
        label = LABEL_MAP["nemo"].get(m.group(2)) if m else None
        if label:
            spk = f"nemo-{m.group(1)}"
            gender = genders.get(spk, "male" if m.group(1) in NEMO_MALE else "female")
            out.append(Utterance(str(p), "nemo", spk, gender, label))
    return out


def load_urdu(root: Path) -> list[Utterance]:
    """S<G><id>_F<n>_<E><nn>, e.g. SM5_F12_A012: G gender (M/F), id the speaker, E the emotion."""
    out = []
    for p in _audio_files(root):
        m = re.fullmatch(r"S([MF])(\d+)_F\d+_([AHNS])\d+", p.stem)
        if m:
            out.append(Utterance(str(p), "urdu", f"urdu-S{m.group(1)}{m.group(2)}",
                                 "male" if m.group(1) == "M" else "female", LABEL_MAP["urdu"][m.group(3)]))
    return out


LOADERS = {"ravdess": load_ravdess, "tess": load_tess, "cremad": load_cremad, "savee": load_savee,
           "emodb": load_emodb, "nemo": load_nemo, "urdu": load_urdu}


def load_corpora(data_dir: str | Path | None = None, corpora=("ravdess", "tess")) -> list[Utterance]:
    """All utterances of the named corpora under data_dir/<corpus>/ (fixtures/ is never included)."""
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory {data_dir} not found; pass --data or set SER_DATA")
    out: list[Utterance] = []
    for name in corpora:
        if name not in LOADERS:
            raise ValueError(f"unknown corpus {name!r}; expected one of {sorted(LOADERS)}")
        root = data_dir / name
        if root.is_dir():
            out.extend(LOADERS[name](root))
    if not out:
        raise FileNotFoundError(f"no utterances of {list(corpora)} under {data_dir}")
    return out


def summary(utts: list[Utterance]) -> str:
    by = Counter((u.corpus, u.gender) for u in utts)
    labels = Counter(u.label for u in utts)
    return (f"{len(utts)} utterances, {len({u.speaker for u in utts})} speakers; "
            + ", ".join(f"{c}/{g}: {n}" for (c, g), n in sorted(by.items()))
            + "; labels: " + ", ".join(f"{k} {labels[k]}" for k in LABELS if labels[k]))

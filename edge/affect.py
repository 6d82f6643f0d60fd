"""Arousal and valence from the eight class probabilities, on a fixed circumplex.

Automations want "raised voices for five minutes" or "low mood all evening", not a label that flips
between angry and disgust. Each label sits at a point of Russell's circumplex of affect (valence:
unpleasant -1 ... pleasant +1; arousal: calm -1 ... excited +1); a window's arousal and valence are
the probability-weighted mean of those points. The coordinates are rounded from the affective-norm
ratings usually used for these labels (e.g. Russell 1980; Warriner et al. 2013 for the words), not
fitted to our data; what they measure on held-out speakers is in docs/model-card.md.
"""

from __future__ import annotations

import numpy as np

# label: (valence, arousal)
CIRCUMPLEX = {
    "neutral": (0.0, -0.2),
    "calm": (0.4, -0.7),
    "happy": (0.8, 0.5),
    "sad": (-0.7, -0.5),
    "angry": (-0.6, 0.8),
    "fearful": (-0.7, 0.6),
    "disgust": (-0.7, 0.3),
    "surprised": (0.3, 0.8),
}


def arousal_valence(scores, labels: list[str]) -> tuple[float, float] | None:
    """(arousal, valence) in -1..1 from class probabilities; None when no label has a place."""
    p = np.asarray(scores, np.float64)
    known = [i for i, lab in enumerate(labels) if lab in CIRCUMPLEX]
    total = p[known].sum() if known else 0.0
    if total <= 0:
        return None
    valence = sum(p[i] * CIRCUMPLEX[labels[i]][0] for i in known) / total
    arousal = sum(p[i] * CIRCUMPLEX[labels[i]][1] for i in known) / total
    return round(float(arousal), 3), round(float(valence), 3)

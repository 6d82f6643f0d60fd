"""Metrics and reports: accuracy, UAR (the headline), macro-F1, per-class scores, confusion matrices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def metrics(y_true, y_pred, labels: list[str]) -> dict:
    """accuracy, UAR (mean recall over classes present), macro-F1, per-class P/R/F1, confusion matrix."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = confusion(y_true, y_pred, len(labels))
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).astype(float)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    present = support > 0
    return {
        "n": int(len(y_true)),
        "accuracy": float(tp.sum() / max(1, len(y_true))),
        "uar": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {labels[i]: {"precision": float(precision[i]), "recall": float(recall[i]),
                                  "f1": float(f1[i]), "support": int(support[i])} for i in range(len(labels))},
        "confusion": cm.tolist(),
    }


def agreement(p_a: np.ndarray, p_b: np.ndarray) -> float:
    """Top-1 agreement between two models' probabilities."""
    return float(np.mean(np.argmax(p_a, 1) == np.argmax(p_b, 1)))


def grouped(y_true, y_pred, groups, labels) -> dict:
    """metrics() per group value (corpus, gender, ...)."""
    groups = np.asarray(groups)
    return {str(g): metrics(np.asarray(y_true)[groups == g], np.asarray(y_pred)[groups == g], labels)
            for g in sorted(set(groups.tolist()))}


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out)


def _fmt(v):
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def plot_confusion(cm, labels, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (row-normalised recall)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_per_class(m: dict, labels, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = np.arange(len(labels))
    for name, off in (("precision", -0.27), ("recall", 0), ("f1", 0.27)):
        ax.bar(x + off, [m["per_class"][lab][name] for lab in labels], 0.27, label=name)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.axhline(m["uar"], color="k", ls="--", lw=1, label=f"UAR {m['uar']:.2f}")
    ax.legend(fontsize=8, ncol=4)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(histories: list[dict], path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for i, h in enumerate(histories):
        axes[0].plot(h.get("loss", []), color=f"C{i}", label=f"fold {i} train")
        axes[0].plot(h.get("val_loss", []), color=f"C{i}", ls="--")
        axes[1].plot(h.get("val_accuracy", []), color=f"C{i}", ls="--")
        axes[1].plot(h.get("accuracy", []), color=f"C{i}")
    axes[0].set_title("loss (solid train, dashed held-out speakers)", fontsize=9)
    axes[1].set_title("accuracy (solid train, dashed held-out speakers)", fontsize=9)
    for a in axes:
        a.set_xlabel("epoch")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(obj, path):
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=True))


# --------------------------------------------------------------------------------------------------
# Arousal and valence (edge/affect.py) on held-out speakers

HIGH_AROUSAL, LOW_AROUSAL = ("angry", "fearful", "happy", "surprised"), ("neutral", "calm", "sad")
PLEASANT, UNPLEASANT = ("happy", "calm"), ("sad", "angry", "fearful", "disgust")


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + ties / 2)


def affect_scores(p_clip: np.ndarray, y: np.ndarray, strong: np.ndarray, labels: list[str]) -> dict:
    """How well the circumplex arousal/valence of clip probabilities `p_clip` (n, classes) separate
    held-out utterances: arousal AUC high- vs low-arousal classes (disgust, between, left out); valence
    AUC pleasant vs unpleasant classes (neutral and surprised left out); and, within each class that
    has both, arousal AUC of strong vs normal intensity (RAVDESS's own arousal signal), averaged."""
    from edge.affect import arousal_valence

    av = np.array([arousal_valence(p, labels) for p in p_clip])
    arousal, valence = av[:, 0], av[:, 1]
    name = np.array(labels)[y]
    out = {"n": int(len(y)),
           "arousal_auc_high_vs_low": auc(arousal[np.isin(name, HIGH_AROUSAL)], arousal[np.isin(name, LOW_AROUSAL)]),
           "valence_auc_pleasant_vs_unpleasant": auc(valence[np.isin(name, PLEASANT)],
                                                     valence[np.isin(name, UNPLEASANT)])}
    per_class = {}
    for lab in labels:
        sel = name == lab
        if sel.any() and strong[sel].any() and (~strong[sel]).any():
            per_class[lab] = auc(arousal[sel & strong], arousal[sel & ~strong])
    out["arousal_auc_strong_vs_normal_within_class"] = (
        float(np.mean(list(per_class.values()))) if per_class else float("nan")
    )
    out["strong_vs_normal_per_class"] = per_class
    out["mean_by_class"] = {
        lab: {
            "arousal": round(float(arousal[name == lab].mean()), 3),
            "valence": round(float(valence[name == lab].mean()), 3),
        }
        for lab in labels
        if (name == lab).any()
    }
    return out

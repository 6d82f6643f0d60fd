"""`ser-edge analyze FILE --plot OUT.png`: one picture of what the device hears and decides.

Four panels sharing a time axis: the waveform, the log-mel spectrogram the model sees, the speech gate
(window level and which windows reached the model), and the emotion timeline (smoothed confidence per
emotion, with the events the service would publish). matplotlib is an optional extra (`plot`); the
device never needs it.
"""

from __future__ import annotations

import numpy as np

from .features import logfbank

COLOURS = {"neutral": "#888888", "calm": "#17becf", "happy": "#e6b800", "sad": "#1f5fbf", "angry": "#d62728",
           "fearful": "#9467bd", "disgust": "#2ca02c", "surprised": "#e377c2"}


def plot_analysis(path_png: str, audio: np.ndarray, windows: list, events: list, labels: list[str],
                  title: str, rate: int = 16000, window_s: float = 2.0, bands: int = 40) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("plotting needs matplotlib: pip install 'ser-edge[plot]'") from None
    t = np.arange(len(audio)) / rate
    fig, axes = plt.subplots(4, 1, figsize=(13, 9), sharex=True,
                             gridspec_kw={"height_ratios": [1, 1.4, 0.8, 1.6]})
    ax = axes[0]
    ax.plot(t, audio, lw=0.4, color="#444")
    ax.set_ylabel("waveform")
    ax.set_ylim(-1, 1)
    ax.set_title(title, fontsize=11, loc="left")

    ax = axes[1]
    mel = logfbank(audio, rate, nfilt=bands, winfunc=np.hamming).T
    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", extent=[0, len(audio) / rate, 0, bands],
              vmin=np.percentile(mel, 5), vmax=mel.max())
    ax.set_ylabel("log-mel band")

    ax = axes[2]
    ends = np.array([w.offset_s for w in windows])
    db = np.array([w.dbfs for w in windows])
    speech = np.array([w.speech for w in windows])
    ax.step(ends, db, where="post", color="#555", lw=1, label="window level (dBFS)")
    ax.scatter(ends[speech], db[speech], color="#2ca02c", s=18, zorder=3, label="speech: sent to the model")
    ax.scatter(ends[~speech], db[~speech], color="#bbb", s=12, zorder=3, label="gated out")
    ax.set_ylabel("gate")
    ax.legend(loc="lower right", fontsize=7, ncol=3)

    ax = axes[3]
    sm = [(w.offset_s, w.smoothed) for w in windows if w.smoothed is not None]
    if sm:
        xs = np.array([s[0] for s in sm])
        ys = np.stack([s[1] for s in sm])
        for i, lab in enumerate(labels):
            if ys[:, i].max() > 0.15:
                ax.plot(xs, ys[:, i], "o-", ms=3, lw=1.2, color=COLOURS.get(lab), label=lab)
    starts = {}
    for e in events:
        if e.type == "start":
            starts[e.id] = e
        elif e.type == "end" and e.id in starts:
            s = starts.pop(e.id)
            ax.axvspan(s.offset_s, e.offset_s, color=COLOURS.get(e.emotion, "#ccc"), alpha=0.15)
            ax.text((s.offset_s + e.offset_s) / 2, 1.02, f"{e.emotion} event", ha="center", fontsize=8,
                    color=COLOURS.get(e.emotion, "#333"))
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("smoothed confidence")
    ax.set_xlabel(f"seconds (each point: the {window_s:g} s window ending there)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7)
    fig.tight_layout()
    fig.savefig(path_png, dpi=100)
    plt.close(fig)

"""Plot a confusion network: bins as columns, alternatives as posterior-scaled bars.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch),
imported only when called.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from speechlm.lattice.lattice import EPS

if TYPE_CHECKING:
    from speechlm.lattice.confusion_network import ConfusionNetwork


def plot_confusion_network(cn: ConfusionNetwork, png_path: str | Path, *,
                           max_entries: int = 6, min_posterior: float = 0.01,
                           min_word_mass: float = 0.01,
                           title: str | None = None, dpi: int = 120) -> Path:
    """Draw ``cn`` to a PNG.

    Each bin is a column (labelled with its mean time); its alternatives are stacked top
    down, best first, each a horizontal bar whose width is its posterior, labelled
    ``word posterior``. The MBR word of each bin is drawn in a darker colour; epsilon
    (no word) is grey and shown as ``ε``.

    Args:
        cn: The confusion network.
        png_path: Output file; parent folders are created.
        max_entries: Alternatives shown per bin.
        min_posterior: Hide alternatives below this posterior.
        min_word_mass: Hide bins whose words (epsilon aside) have less mass than this.
        title: Figure title (default: the utterance id).
        dpi: Resolution.

    Returns:
        ``Path(png_path)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bins = [b for b in cn.bins if sum(e.posterior for e in b if e.word != EPS) >= min_word_mass]
    n_bins = max(len(bins), 1)
    rows = max([min(len(b), max_entries) for b in bins] + [1])
    fig = Figure(figsize=(max(4.0, 1.3 * n_bins), max(2.0, 0.45 * rows + 1.2)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for q, b in enumerate(bins):
        shown = [e for e in b if e.posterior >= min_posterior][:max_entries]
        for r, e in enumerate(shown):
            eps = e.word == EPS
            colour = "#bbbbbb" if eps else ("#1f5fa8" if r == 0 else "#8fb3dc")
            ax.barh(-r, 0.9 * e.posterior, left=q, height=0.8, color=colour,
                    edgecolor="none")
            ax.text(q + 0.03, -r, f"{'ε' if eps else e.word} {e.posterior:.2f}",
                    va="center", ha="left", fontsize=8,
                    color="black" if e.posterior < 0.6 or eps or r else "white")
    ax.set_xlim(0, n_bins)
    ax.set_ylim(-rows + 0.4, 0.6)
    ax.set_yticks([])
    centres = [sum(e.posterior * (e.start + e.end) / 2 for e in b) for b in bins]
    ax.set_xticks([q + 0.45 for q in range(len(bins))])
    ax.set_xticklabels([f"{t:.2f}s" for t in centres], fontsize=7)
    ax.set_xlabel("confusion-network bin (mean time)")
    ax.set_title(title if title is not None else f"{cn.utt}: {' '.join(cn.mbr_words())}",
                 fontsize=9)
    for spine in ("top", "right", "left"):
        ax.spines[spine].set_visible(False)
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=dpi)
    return png_path

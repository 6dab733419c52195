"""vitnp.analysis.plots: the figures of a run (the PNG files themselves are checked in tests/test_visualize.py)."""
import pytest

from vitnp.analysis import plots


def history(n):
    return [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5 + e / 100, "val_loss": 1.2 / e,
             "val_acc": 0.5 + e / 120} for e in range(1, n + 1)]


@pytest.mark.parametrize("n", [3, 20, 25, 60])
def test_the_curves_span_the_epochs_run_and_nothing_before(n):
    """A 25-epoch run's axis used to run from −5 to 30: it now starts at the first epoch (±0.5) and ends at the last,
    with integer ticks inside that range."""
    fig = plots.curves_figure(history(n))
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert (lo, hi) == (0.5, n + 0.5)
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() and 1 <= t <= n for t in ticks)
        if n <= 20:
            assert list(ax.get_xticks()) == list(range(1, n + 1))

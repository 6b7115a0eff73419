"""Drawing matplotlib figures from a threaded server: one drawing at a time, its settings in force.

matplotlib's settings (``rcParams``) are one dictionary for the whole
process, read when a figure's artists are made and again when it is saved
(``svg.fonttype``, for one, is read only while saving). ``rc_context`` sets
them for a block and puts the old ones back after it, which is not safe
while another thread draws: a figure could be saved with the other thread's
settings, or with none. Every figure this package and the console draw is
made and saved inside :func:`drawing`, which holds one lock for the process.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Mapping

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

_DRAWING = threading.RLock()


@contextmanager
def drawing(rc: Mapping[RcKeyType, Any] | None = None) -> Iterator[None]:
    """Hold the process's drawing lock with ``rc`` in force; matplotlib's defaults come back after."""
    # Imported here so that code which never draws never pays for matplotlib.
    import matplotlib

    with _DRAWING, matplotlib.rc_context(dict(rc or {})):
        yield

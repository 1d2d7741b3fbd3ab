"""The folder in which the workers of `chatroom --workers N` keep their metrics.

prometheus-client's multiprocess mode: every process writes its metrics into files of the
folder named by PROMETHEUS_MULTIPROC_DIR, and a scrape of any worker adds them all up
(app/web/metrics.py). The folder must start empty: files left by an earlier run would be
added to this one's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_folder(workers: int) -> Callable[[], None]:
    """Empty the folder PROMETHEUS_MULTIPROC_DIR names, if it is set; otherwise, for more than
    one worker, make a private one and name it there for the workers. Returns what removes
    what was made (the folder an operator named stays, emptied at the next start)."""
    named = os.environ.get(MULTIPROCESS_DIR)
    if named:
        folder = Path(named)
        folder.mkdir(parents=True, exist_ok=True)
        # Only the library's files: the operator may have named a folder that holds others.
        for path in folder.glob("*.db"):
            path.unlink()
        return lambda: None
    if workers <= 1:
        return lambda: None  # one process reads its own counts when scraped
    made = tempfile.mkdtemp(prefix="chatroom-metrics-")  # mode 0700: nobody else can write figures into it
    os.environ[MULTIPROCESS_DIR] = made
    return lambda: shutil.rmtree(made, ignore_errors=True)

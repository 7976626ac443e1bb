"""What a command prints besides its results, scoped to one command (:func:`command_output`):

- warnings raised by other packages (Captum, pytorch-grad-cam, Quantus, pycocotools, timm,
  torchvision, torch, numpy, ...) are shown once each, however often they recur: code that
  enters ``warnings.catch_warnings()`` per batch (ours around pycocotools' decoder, torch's,
  the libraries' own) resets Python's "once per location" memory, so without this a warning
  can come back on every batch. At the end, one line counts the repeats not shown. With
  ``quiet`` they are not shown at all. groundbench's own warnings (raised by code of the
  ``bench`` package) are shown as Python shows them;
- the progress bars of the libraries behind the adapters (:func:`bench.methods.adapters.library_progress`)
  follow the command's ``--no-progress`` / ``--quiet``.

Nothing is left changed when the block ends: the warning filters and ``warnings.showwarning``
are restored by ``warnings.catch_warnings``, the adapters' setting by its context variable.
This is not a subcommand (``bench.cli.COMMAND_MODULES`` does not list it).
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

import bench

BENCH_DIR = Path(bench.__file__).resolve().parent


class WarningGate:
    """``warnings.showwarning`` for one command. A warning raised by code outside the ``bench``
    package is written the first time its (category, text) is seen and only counted after that;
    groundbench's own are written every time Python's filters let them through. Written to
    ``file`` if the caller gave one, else to ``sys.stderr`` as it is at that moment.

    Who raised a warning is the module of the innermost Python frame below the ``warnings``
    machinery, not the warning's file: a library's ``warnings.warn(..., stacklevel=2)`` names
    its caller's line (often groundbench's) but is still the library's warning. Only when no
    such frame is found is the file used."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.seen: Counter[tuple[type, str]] = Counter()
        self._own_files: dict[str, bool] = {}

    def is_own(self, filename: str) -> bool:
        raiser = _raising_module()
        if raiser is not None:
            return raiser == "bench" or raiser.startswith("bench.")
        if filename not in self._own_files:
            try:
                Path(filename).resolve().relative_to(BENCH_DIR)
                self._own_files[filename] = True
            except (ValueError, OSError):
                self._own_files[filename] = False
        return self._own_files[filename]

    def __call__(self, message, category, filename, lineno, file: TextIO | None = None, line: str | None = None) -> None:
        if not self.is_own(str(filename)):
            key = (category, str(message))
            self.seen[key] += 1
            if self.quiet or self.seen[key] > 1:
                return
        stream = file if file is not None else sys.stderr
        try:
            stream.write(warnings.formatwarning(message, category, filename, lineno, line))
        except OSError:
            pass  # a closed stderr must not turn a warning into an error (as Python's own)

    def summary(self) -> str | None:
        """One line about the repeats not shown; None when there were none (or under quiet)."""
        hidden = {k: n - 1 for k, n in self.seen.items() if n > 1}
        if self.quiet or not hidden:
            return None
        total = sum(hidden.values())
        return (
            f"note: {total} repeat(s) of {len(hidden)} warning(s) from other packages were not "
            f"shown again (each is shown once above)"
        )


def _raising_module() -> str | None:
    """``__name__`` of the innermost frame that is neither this module nor Python's warnings
    machinery (``warnings``; ``_py_warnings`` from Python 3.14): the code that warned."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") in (__name__, "warnings", "_py_warnings"):
        frame = frame.f_back
    return frame.f_globals.get("__name__") if frame is not None else None


@contextmanager
def command_output(*, quiet: bool = False, progress: bool = True) -> Iterator[WarningGate]:
    """The block of one command: other packages' warnings once each (none with ``quiet``), a
    closing note with the count of repeats, and the adapters' library progress bars only when
    ``progress`` (and not ``quiet``)."""
    from bench.methods.adapters import library_progress

    gate = WarningGate(quiet=quiet)
    with warnings.catch_warnings(), library_progress(progress and not quiet):
        warnings.showwarning = gate
        try:
            yield gate
        finally:
            note = gate.summary()
            if note:
                print(note, file=sys.stderr)

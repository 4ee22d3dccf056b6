"""One error type for bad input: the CLI prints it as one line and exits with code 2."""

from __future__ import annotations

from pathlib import Path


class NeuroditError(Exception):
    """A user-facing problem with input or configuration.

    The message must name the offending file (when there is one) and the problem, on one line,
    e.g. ``NeuroditError("sub-003.nii.gz: 4D volume (shape 10x10x10x65), expected 3D", path)``.
    """

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        text = " ".join(str(message).split())  # one line, always
        if path is not None and str(path) not in text:
            text = f"{path}: {text}"
        super().__init__(text)

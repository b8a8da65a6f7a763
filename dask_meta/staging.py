"""Output directories written all or nothing: into a hidden sibling, then moved into place.

``write_predictions`` and ``save`` (and so the CLI's outputs) write every file into a
sibling ``.<name>.dask-meta-<token>`` of the target; only when all are written does the
sibling replace the target. A failure removes the sibling and leaves the target as it was,
and an existing non-empty target is refused unless the caller passes ``overwrite=True``,
which replaces it whole (no file of an older output stays beside the new ones).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from dataclasses import dataclass
from typing import Any

from dask_meta import runtime


@dataclass(frozen=True)
class StagedDirectory:
    """A target directory (``fs``, ``root``) and the sibling its files are written to:
    ``staging`` for ``fs`` calls, ``staging_url`` for writers that take a URL."""

    fs: Any
    root: str
    staging: str
    staging_url: str

    @classmethod
    def claim(
        cls, path: Any, storage_options: dict[str, Any] | None, overwrite: bool
    ) -> StagedDirectory:
        """The staging of ``path``; refused (before any work) if ``path`` exists, is not an
        empty directory and ``overwrite`` is False."""
        from fsspec.core import url_to_fs

        if not isinstance(overwrite, bool):
            raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
        url = os.fspath(path)
        fs, root = url_to_fs(url, **(storage_options or {}))
        root = root.rstrip("/")
        if fs.exists(root) and not overwrite and (not fs.isdir(root) or fs.ls(root)):
            raise FileExistsError(
                f"{url} exists and is not empty; pass overwrite=True to replace it whole, or "
                "choose another path"
            )
        parent, name = posixpath.split(root)
        staging = posixpath.join(parent, f".{name}.dask-meta-{runtime.new_token()}")
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        staging_url = staging if "file" in protocols else fs.unstrip_protocol(staging)
        return cls(fs, root, staging, staging_url)

    def abandon(self) -> None:
        """Remove the sibling (after a failure); the target is untouched."""
        with contextlib.suppress(Exception):
            if self.fs.exists(self.staging):
                self.fs.rm(self.staging, recursive=True)

    def commit(self) -> None:
        """Replace the target with the complete sibling."""
        if self.fs.exists(self.root):
            self.fs.rm(self.root, recursive=True)
        self.fs.mv(self.staging, self.root, recursive=True)

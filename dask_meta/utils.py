"""Helpers shared with metalearners' public ``utils``."""

from __future__ import annotations

from typing import Any


def simplify_output(tensor: Any) -> Any:
    """metalearners' ``simplify_output``: squeeze a CATE/CAO tensor to the usual shapes.

    ``(n,1,1)`` -> ``(n,)``; ``(n,1,2)`` -> ``(n,)`` (positive class); ``(n,1,c)`` ->
    ``(n,c)``; ``(n,v,1)`` -> ``(n,v)``; ``(n,v,2)`` -> ``(n,v)`` (positive class); other
    shapes unchanged. Works on numpy and (lazily) on Dask arrays.
    """
    if tensor.ndim != 3:
        raise ValueError("Output needs to be 3-dimensional.")
    _, n_variants, n_outputs = tensor.shape
    if n_variants == 1 and n_outputs == 1:
        return tensor[:, 0, 0]
    if n_variants == 1 and n_outputs == 2:
        return tensor[:, 0, 1]
    if n_variants == 1:
        return tensor[:, 0, :]
    if n_outputs == 1:
        return tensor[:, :, 0]
    if n_outputs == 2:
        return tensor[:, :, 1]
    return tensor


__all__ = ["simplify_output"]

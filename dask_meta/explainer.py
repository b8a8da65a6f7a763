"""metalearners' ``metalearners.explainer`` module path: :class:`Explainer` of
:mod:`dask_meta.explain`."""

from dask_meta.explain import Explainer

__all__ = ["Explainer"]

"""Lazily computed per-map values kept in one store that ``release()`` empties whole.

The contexts (:class:`gpuvalid.context.MapContext`, :class:`gpuvalid.level1.context.Level1Context`) compute
masks, transforms and resampled maps on first use and share them between sections.  :class:`cached` keeps
each value in the owner's ``_lazy`` dict under the method's name (as scikit-image's ``regionprops`` keeps
its cache), so releasing a map's device memory between maps in batch mode is ``_lazy.clear()``: a value
added later cannot be missed by a list of names.
"""

from __future__ import annotations


class cached(property):  # noqa: N801 (used as a decorator, like functools.cached_property)
    """A property computed by ``fn(self)`` on first use and kept in ``self._lazy[fn.__name__]``.

    Assigning to it stores a value made elsewhere (a device copy already at hand).  An exception is not
    cached: the next access computes again, as with :func:`functools.cached_property`.
    """

    def __init__(self, fn):
        name = fn.__name__

        def get(obj):
            store = obj._lazy
            if name not in store:
                store[name] = fn(obj)
            return store[name]

        def put(obj, value):
            obj._lazy[name] = value

        super().__init__(get, put)
        self.__doc__ = fn.__doc__      # the method's docstring, not this class's


def forget(owner, names) -> None:
    """Drop these :class:`cached` values of ``owner``, if made; a later use computes them again."""
    for name in names:
        owner._lazy.pop(name, None)

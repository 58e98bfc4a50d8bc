"""numba compilation with best-effort on-disk caching, for every compiled kernel of unmask.

numba refuses ``cache=True`` at decoration time where it finds no writable cache location
(a read-only install, no writable home): a bare ``@nb.njit(cache=True)`` there breaks the
import of its module, and so a command. :func:`compiled` caches where it can and compiles
in every process where it cannot. Its own module, not ``core.runtime``: importing numba
costs seconds, and runtime touches numba only once a caller has loaded it.

Example:
    >>> @compiled(fastmath={"contract"})
    ... def twice(x):
    ...     return 2.0 * x
    >>> twice(1.5)
    3.0
"""
from __future__ import annotations

import numba as nb


def compiled(function=None, /, **options):
    """``function`` compiled by numba without the GIL (``nogil``, so callers may run it in
    threads) and cached on disk where numba finds a writable cache location (beside the
    source, or ``NUMBA_CACHE_DIR``); uncached where it does not.

    Args:
        function: the Python function; omitted, ``compiled(**options)`` is a decorator.
        **options: further ``numba.njit`` options (``fastmath=``; ``nogil=False``).

    Returns:
        The numba dispatcher (or, without ``function``, a decorator that returns one).
    """
    if function is None:
        return lambda later: compiled(later, **options)
    options = {"nogil": True, **options}
    try:
        return nb.njit(cache=True, **options)(function)
    except RuntimeError as error:
        if "cannot cache" not in str(error):
            raise
        return nb.njit(**options)(function)

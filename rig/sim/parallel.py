"""Row order for the simulator's parallel kernels.

numba splits a `prange` into equal contiguous blocks, one per thread. Image rows do not cost the
same (sky rows are cheap to render, ground rows dear; events cluster where things move), so in
plain row order one core idled for much of each call. Visiting rows as (j * stride) % height,
with a stride coprime to the height, gives every thread rows from all over the image. Outputs are
written per row, so the order changes no result.
"""

from __future__ import annotations

import numba as nb


@nb.njit(cache=True)
def row_stride(height: int) -> int:
    """The smallest odd stride >= 97 that is coprime to `height`."""
    s = 97
    while True:
        a, b = s, height
        while b:
            a, b = b, a % b
        if a == 1:
            return s
        s += 2

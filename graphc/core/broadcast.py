"""Broadcasting, Theano-style: only a dimension that is statically 1 broadcasts.

A dimension bound at call time (None) never broadcasts: it must equal the other operands'
dimension when the function runs. This keeps gradients static (un-broadcasting knows which axes
to sum at graph-build time) and is what lets one compiled program serve every batch size.
"""

from __future__ import annotations

from .errors import ShapeError, shape_error
from .types import Shape, format_shape


def broadcast_static(shapes: list[Shape], op: str) -> Shape:
    """The broadcast shape of several static shapes, or a ShapeError naming op and shapes.

    >>> broadcast_static([(None, 3), (3,)], "add")
    (None, 3)
    """
    ndim = max((len(s) for s in shapes), default=0)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    out = []
    for axis in range(ndim):
        dims = {p[axis] for p in padded} - {1}
        known = {d for d in dims if d is not None}
        if len(known) > 1:
            shown = ", ".join(format_shape(s) for s in shapes)
            raise shape_error(op, f"shapes {shown} do not broadcast (axis {axis}: sizes {sorted(known)})")
        if known:
            out.append(known.pop())
        elif None in dims:
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def broadcast_concrete(static: list[Shape], concrete: list[tuple], op: str) -> tuple:
    """Check call-time shapes against the static broadcast pattern and return the result shape.

    >>> broadcast_concrete([(None, 3), (3,)], [(5, 3), (3,)], "add")
    (5, 3)
    """
    ndim = max((len(s) for s in static), default=0)
    out = []
    for axis in range(ndim):
        sizes = set()
        for st, co in zip(static, concrete):
            k = axis - (ndim - len(st))
            if k >= 0 and st[k] != 1:
                sizes.add(co[k])
        if len(sizes) > 1:
            shown = ", ".join(str(tuple(c)) for c in concrete)
            raise ShapeError(f"{op}: call-time shapes {shown} disagree on axis {axis} (sizes {sorted(sizes)}); "
                             "a dimension declared None never broadcasts, it must match")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)

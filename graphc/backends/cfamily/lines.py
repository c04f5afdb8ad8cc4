"""Line kernels written once for C and CUDA: a reduction along one axis of each line, then a
write along it (softmax, log_softmax, the softmax cross-entropy and its gradient).

Hooks (see the package doc for the rest): ``em.line_loop(name, count, work, fns, reductions,
body)`` runs `body` for each ``line`` (C: a thread per line, ``ok`` always 1; CUDA: a group of
lanes per line, ``ok`` false for the padding groups of the last block); ``em.line_reduce(kind,
var, type, n, expr, each)`` reduces `expr` over ``j < n`` into `var` ("max" or "sum"; `each` runs
per element with the value ``v``); ``em.line_each(n, stmt)`` and ``em.line_once(stmt)`` write;
``em.line_argmax(best, at, type, n, expr)`` finds the first maximum (a NaN wins);
``em.wide(type)`` is the accumulator of sums (double on the CPU); ``em.line_launch(fns)`` the
launch geometry (None for C). A NaN anywhere in a line reaches every output of it through the
sum, so the max needs no NaN tracking; an infinite max counts as 0 (no inf - inf).
"""

from __future__ import annotations

from ...ops.nn import LogSoftmax, Softmax, SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad, SoftmaxCrossEntropyWithGrad
from ...ops.reduce import Argmax
from ..cexpr import C_TYPES
from .index import local, numel, shape_of, split3, split3_fn


def _class_axis(z):
    def length(shapes):
        return shape_of(z, shapes)[-1]

    return length


def _fixup(ct: str) -> str:
    return f"    if (!(mx - mx == 0)) mx = ({ct})0;  /* an infinite max must not make inf - inf */\n"


def _log(ct: str, wt: str) -> str:
    return "log" if wt == "double" else ("gc_logf" if ct == "float" else "gc_log")


def softmax_like(em, name, node, index, label, log: bool):
    x, out = node.inputs[0], node.outputs[0]
    ct, wt = C_TYPES[x.dtype], em.wide(C_TYPES[x.dtype])
    sfx = "f" if x.dtype == "float32" else ""
    axis = node.op.axis
    outer, n, inner = split3(em, x, axis)
    split = split3_fn(x, axis)
    fns = (lambda s: split(s)[0] * split(s)[2], lambda s: split(s)[1], lambda s: split(s)[2] > 1)
    write = "(v - mx) - lse" if log else f"gc_exp{sfx}(v - mx) * inv"
    body = ("    const int64_t base = ok ? (line / inner) * n * inner + (line % inner) : 0;\n"
            + em.line_reduce("max", "mx", ct, "n", "x[base + j*inner]") + _fixup(ct)
            + em.line_reduce("sum", "s", wt, "n", f"gc_exp{sfx}(x[base + j*inner] - mx)")
            + f"    const {ct} lse = ({ct}){_log(ct, wt)}(s), inv = ({ct})(1 / s);\n    (void)lse; (void)inv;\n"
            + em.line_each("n", f"const {ct} v = x[base + j*inner]; y[base + j*inner] = {write};"))
    code = (local(em, x, "x") + local(em, out, "y", const=False)
            + f"  const int64_t outer = {outer}, n = {n}, inner = {inner};\n"
            + em.line_loop(name, "outer*inner", "outer*n*inner", fns, [("mx", ct), ("s", wt)], body))
    return em.kernel(name, code, label, numel(out), index, launch=em.line_launch(fns))


def _rows(em, name, node):
    """The common head of the cross-entropy kernels: per row, its label and validity."""
    z, t = node.inputs[-2:]
    fns = (numel(t), _class_axis(z), lambda s: False)
    head = (local(em, z, "z") + local(em, t, "labels")
            + f"  const int64_t rows = {em.size(t)}, C = {em.dim(z, z.ndim - 1)};\n")
    row = ("    const int64_t lab = ok ? (int64_t)labels[line] : -1;\n    const int valid = lab >= 0 && lab < C;\n"
           "    const int64_t at = ok ? line*C : 0;\n")
    return head, row, fns


def cross_entropy(em, name, node, index, label):
    """-log_softmax(z)[label] per row; 0 for a label outside [0, C)."""
    z, out = node.inputs[0], node.outputs[0]
    ct, wt = C_TYPES[z.dtype], em.wide(C_TYPES[z.dtype])
    sfx = "f" if z.dtype == "float32" else ""
    head, row, fns = _rows(em, name, node)
    body = (row + em.line_reduce("max", "mx", ct, "C", "z[at + j]") + _fixup(ct)
            + em.line_reduce("sum", "s", wt, "C", f"gc_exp{sfx}(z[at + j] - mx)")
            + em.line_once(f"y[line] = valid ? ({ct})({_log(ct, wt)}(s) - ({wt})(z[at + (valid ? lab : 0)] - mx))"
                           f" : ({ct})0;"))
    code = head + local(em, out, "y", const=False) + em.line_loop(name, "rows", "rows*C", fns, [("mx", ct), ("s", wt)],
                                                                  body)
    return em.kernel(name, code, label, numel(out), index, launch=em.line_launch(fns))


def cross_entropy_grad(em, name, node, index, label):
    """g * (exp(z - max) / sum * valid - hot) per row: the exponentials are stored in the output
    by the sum's pass and rescaled by the write's."""
    return _softmax_rows(em, name, node, index, label, with_loss=False)


def cross_entropy_with_grad(em, name, node, index, label):
    """The losses and their gradient in one pass over each row: the max, then the sum of the
    exponentials (stored in the gradient), the loss, and the gradient's rescaling write. The
    sum is in the logits' type, as the gradient's own kernel has it (a double sum made this
    kernel 1.7x slower on the CPU), with 16-lane partial sums."""
    return _softmax_rows(em, name, node, index, label, with_loss=True)


def _softmax_rows(em, name, node, index, label, with_loss: bool):
    """The gradient kernels' common body; `with_loss` also writes each row's loss (outputs
    (loss, gradient)) and rescales by one reciprocal instead of a division per element."""
    g, z = node.inputs[:2]
    out = node.outputs[-1]
    ct = C_TYPES[z.dtype]
    sfx = "f" if z.dtype == "float32" else ""
    head, row, fns = _rows(em, name, node)
    hot = f"(j == lab ? ({ct})1 : ({ct})0)"
    body = (row + f"    const {ct} gr = ok ? gv[line] : ({ct})0;\n"
            + em.line_reduce("max", "mx", ct, "C", "z[at + j]") + _fixup(ct)
            + em.line_reduce("sum", "s", ct, "C", f"gc_exp{sfx}(z[at + j] - mx)", each="y[at + j] = v;"))
    code = head + local(em, g, "gv") + local(em, out, "y", const=False)
    if with_loss:
        body += (em.line_once(f"yl[line] = valid ? gc_log{sfx}(s) - (z[at + (valid ? lab : 0)] - mx) : ({ct})0;")
                 + f"    const {ct} inv = ({ct})1 / s;\n"
                 + em.line_each("C", f"y[at + j] = gr * ((y[at + j] * inv) * ({ct})valid - {hot});"))
        code += local(em, node.outputs[0], "yl", const=False)
    else:
        body += em.line_each("C", f"y[at + j] = gr * ((y[at + j] / s) * ({ct})valid - {hot});")
    code += em.line_loop(name, "rows", "rows*C", fns, [("mx", ct), ("s", ct)], body)
    return em.kernel(name, code, label, numel(out), index, launch=em.line_launch(fns))


def argmax(em, name, node, index, label):
    """The first position of each line's maximum (the first NaN wins, as in NumPy)."""
    x, out = node.inputs[0], node.outputs[0]
    ct = C_TYPES[x.dtype]
    axis = node.op.axis
    if axis is None:
        outer, n, inner = "1", em.size(x), "1"

        def split(s):
            return 1, numel(x)(s), 1
    else:
        outer, n, inner = split3(em, x, axis)
        split = split3_fn(x, axis)
    fns = (lambda s: split(s)[0] * split(s)[2], lambda s: split(s)[1], lambda s: split(s)[2] > 1)
    body = ("    const int64_t base = ok ? (line / inner) * n * inner + (line % inner) : 0;\n"
            + em.line_argmax("best", "at", ct, "n", "x[base + j*inner]") + em.line_once("y[line] = at < 0 ? 0 : at;"))
    code = (local(em, x, "x") + local(em, out, "y", const=False)
            + f"  const int64_t outer = {outer}, n = {n}, inner = {inner};\n"
            + em.line_loop(name, "outer*inner", "outer*n*inner", fns, [("best", ct), ("at", "long long")], body))
    return em.kernel(name, code, label, numel(out), index, launch=em.line_launch(fns))


#: the line templates, by op class
LINE_TEMPLATES = {
    Softmax: lambda em, name, node, index, label: softmax_like(em, name, node, index, label, log=False),
    LogSoftmax: lambda em, name, node, index, label: softmax_like(em, name, node, index, label, log=True),
    SoftmaxCrossEntropy: cross_entropy,
    SoftmaxCrossEntropyGrad: cross_entropy_grad,
    SoftmaxCrossEntropyWithGrad: cross_entropy_with_grad,
    Argmax: argmax,
}

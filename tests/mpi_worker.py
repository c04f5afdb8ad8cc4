"""Checks that run inside ``mpiexec -n K python tests/mpi_worker.py CHECK...``; launched by
tests/test_distributed.py (each launch runs several checks, to keep the number of MPI start-ups
small). Every rank runs every check; a failing check raises, which aborts the whole job with
the failing rank's message. Rank 0 prints ``OK <check>`` after each check that passed."""

from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace

import numpy as np

import graphc as gc
from graphc import distributed as dist
from graphc.nn import Dense, Dropout, Sequential, losses

RANK, SIZE = dist.rank(), dist.size()


def log(msg: str) -> None:
    if RANK == 0:
        print(msg, flush=True)


def same_on_every_rank(arrays, what: str) -> None:
    """Bitwise identity of `arrays` across the ranks (rank 0's bytes against each rank's)."""
    if SIZE == 1:
        return
    from mpi4py import MPI

    mine = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)
    root = MPI.COMM_WORLD.bcast(mine, root=0)
    ok = MPI.COMM_WORLD.allreduce(int(root == mine), op=MPI.MIN)
    assert ok == 1, f"{what}: the ranks' values are not bitwise identical"


def write_on_rank0(path: str, name: str, weights, **logs) -> None:
    """Rank 0 writes the weights and the logged lists as JSON, for the test to compare runs."""
    if RANK == 0:
        with open(os.path.join(path, name), "w") as fh:
            json.dump({"weights": [w.tolist() for w in weights], **logs}, fh)


# -- allreduce forward and gradient --------------------------------------------------------------


def check_allreduce(backends=("ref", "c")) -> None:
    for backend in backends:
        for dtype in ("float32", "float64"):
            for op in ("sum", "mean"):
                x = gc.placeholder("x", (None, 3), dtype)
                w = gc.placeholder("w", (None, 3), dtype)
                y = dist.allreduce(x * x, op=op)
                gx = gc.grad((y * w).sum(), x)
                f = gc.function([x, w], [y, gx], backend=backend)
                # each rank holds different values; the expected results are written from all of them
                xs = [np.arange(6, dtype=dtype).reshape(2, 3) - 2.5 + q for q in range(SIZE)]
                ws = [np.full((2, 3), q + 1.0, dtype) for q in range(SIZE)]
                yv, gv = f(xs[RANK], ws[RANK])
                k = 1.0 if op == "sum" else 1.0 / SIZE
                want_y = k * sum(a * a for a in xs)
                want_g = 2 * xs[RANK] * k * sum(ws)  # d/dx_r of sum_q <y, w_q>
                tol = 1e-6 if dtype == "float32" else 1e-13
                np.testing.assert_allclose(yv, want_y, rtol=tol, err_msg=f"{backend} {dtype} {op} forward")
                np.testing.assert_allclose(gv, want_g, rtol=tol, err_msg=f"{backend} {dtype} {op} gradient")
                assert yv.dtype == dtype and gv.dtype == dtype
                same_on_every_rank([yv], f"allreduce {backend} {dtype} {op}")
        # several tensors of different shapes in one call, and an integer sum
        a, b = gc.placeholder("a", (2, 2)), gc.placeholder("b", (3,))
        ra, rb = dist.allreduce([a * 1.0, b + 0.0], op="sum")
        i = gc.placeholder("i", (4,), "int64")
        ri = dist.allreduce(i * 1, op="sum")
        f = gc.function([a, b, i], [ra, rb, ri], backend=backend)
        va, vb, vi = f(np.full((2, 2), RANK + 1.0, "float32"), np.arange(3, dtype="float32") * (RANK + 1),
                       np.arange(4) + RANK)
        total = SIZE * (SIZE + 1) / 2
        np.testing.assert_array_equal(va, np.full((2, 2), total, "float32"))
        np.testing.assert_array_equal(vb, np.arange(3, dtype="float32") * total)
        np.testing.assert_array_equal(vi, SIZE * np.arange(4) + SIZE * (SIZE - 1) // 2)
    log(f"OK allreduce {SIZE} ranks on {', '.join(backends)}")


def check_allreduce_cuda() -> None:
    """The CUDA backend's host-staged allreduce, on the CUDA emulator (no GPU needed): values,
    gradients, several tensors, and an SGD step equal to the C backend's."""
    os.environ["GRAPHC_CUDA_EMULATE"] = "1"
    check_allreduce(backends=("cuda",))
    rng = np.random.default_rng(RANK)
    xb, tb = rng.normal(size=(8, 12)).astype("float32"), rng.integers(0, 5, 8).astype("int32")
    weights = {}
    for backend in ("c", "cuda"):
        model = mlp(seed=4)
        x, t = gc.placeholder("x", (None, 12)), gc.placeholder("t", (None,), "int32")
        loss = losses.categorical_crossentropy(model(x), t)
        opt = dist.DistributedOptimizer(gc.optim.SGD(0.1))
        f = gc.function([x, t], loss, updates=opt.updates(loss, model.params), backend=backend)
        for _ in range(3):
            f(xb, tb)
        weights[backend] = [p.get_value() for p in model.params]
    for a, b in zip(weights["c"], weights["cuda"]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg="cuda (emulated) vs c")
    same_on_every_rank(weights["cuda"], "cuda SGD steps")
    log(f"OK cuda allreduce {SIZE} ranks")


# -- N ranks x batch B == one process x batch N*B ------------------------------------------------


def mlp(seed: int = 3):
    # fixed layer names: a checkpoint is matched by variable name, in another process
    return Sequential([Dense(16, activation="tanh", seed=seed, name="hidden"), Dense(5, seed=seed + 1, name="out")],
                      input_shape=(12,))


def train_steps(optimizer, distributed: bool, steps: int, global_batch: int, backend: str):
    """Weights after `steps` steps from the same start; with `distributed`, this rank takes its
    slice of each global batch (fit's sharding) and the optimizer averages over the ranks."""
    model = mlp()
    x = gc.placeholder("x", (None, 12))
    t = gc.placeholder("t", (None,), "int32")
    loss = losses.categorical_crossentropy(model(x, training=True), t)
    opt = dist.DistributedOptimizer(optimizer) if distributed else optimizer
    step = gc.function([x, t], loss, updates=opt.updates(loss, model.params), backend=backend)
    if distributed:
        dist.broadcast_variables(model.params)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(steps * global_batch, 12)).astype("float32")
    T = rng.integers(0, 5, steps * global_batch).astype("int32")
    one_step = SimpleNamespace(steps=[SimpleNamespace(name="train", optimizer=opt)])  # what FitContext reads
    ctx = dist.FitContext(one_step) if distributed else None
    for s in range(steps):
        batch = np.arange(s * global_batch, (s + 1) * global_batch)
        if distributed:
            batch, _ = ctx.shard(batch)
        step(X[batch], T[batch])
    return [p.get_value() for p in model.params] + [v.get_value() for v in optimizer.slots]


def check_equivalence(global_batch: int = 64) -> None:
    makers = {"sgd": lambda: gc.optim.SGD(0.1), "momentum": lambda: gc.optim.SGD(0.05, momentum=0.9),
              "adam": lambda: gc.optim.Adam(1e-2)}
    for backend in ("c", "ref"):
        for name, make in makers.items():
            if backend == "ref" and name != "adam":
                continue  # the reference backend runs the same graph: one optimizer is enough there
            got = train_steps(make(), True, 20, global_batch, backend)
            want = train_steps(make(), False, 20, global_batch, backend)
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6, err_msg=f"{backend} {name}")
            same_on_every_rank(got, f"{backend} {name} weights")
            moved = max(float(np.abs(a - b).max()) for a, b in zip(want, train_steps(make(), False, 0, 64, backend)))
            assert moved > 1e-2, "the weights did not move: the comparison would prove nothing"
    log(f"OK equivalence {SIZE} ranks x batch {global_batch // SIZE}")


def check_every_optimizer() -> None:
    """DistributedOptimizer around every optimizer of graphc.optim: 3 steps equal one process."""
    # (SGD, momentum and Adam are in check_equivalence)
    makers = [lambda: gc.optim.Nesterov(0.1, clipvalue=0.01), lambda: gc.optim.AdaGrad(0.1),
              lambda: gc.optim.RMSProp(1e-2, centered=True, momentum=0.5), lambda: gc.optim.SGDW(0.1),
              lambda: gc.optim.AdamW(1e-2, amsgrad=True, clipnorm=0.5)]
    for make in makers:
        got = train_steps(make(), True, 3, 16 * SIZE, "c")
        want = train_steps(make(), False, 3, 16 * SIZE, "c")
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6, err_msg=repr(make()))
        same_on_every_rank(got, repr(make()))
    log("OK every optimizer")


# -- broadcast, dropout streams, fit, checkpoints --------------------------------------------------


def check_broadcast() -> None:
    a = gc.shared(np.full((3, 2), RANK, "float32"), name="a")
    b = gc.shared(np.full(4, 10 * RANK, "int64"), name="b")
    root = SIZE - 1
    dist.broadcast_variables([a, b], root=root)
    np.testing.assert_array_equal(a.get_value(), np.full((3, 2), root, "float32"))
    np.testing.assert_array_equal(b.get_value(), np.full(4, 10 * root, "int64"))
    log("OK broadcast")


def check_dropout_streams() -> None:
    """Dropout masks differ between ranks (each has its own random stream)."""
    model = Sequential([Dense(64, seed=1), Dropout(0.5, seed=11)], input_shape=(8,))
    x = gc.placeholder("x", (None, 8))
    out = model(x, training=True)
    opt = dist.DistributedOptimizer(gc.optim.SGD(0.0))
    f = gc.function([x], out, updates=opt.updates(out.sum() * 0.0, model.params))
    mask = f(np.ones((4, 8), "float32")) != 0
    from mpi4py import MPI

    masks = MPI.COMM_WORLD.allgather(mask)
    assert 0.3 < mask.mean() < 0.7
    assert all(not np.array_equal(masks[0], m) for m in masks[1:]), "two ranks drew the same dropout mask"
    log("OK dropout streams")


def check_fit(path: str) -> None:
    """fit under mpiexec: the same weights as one process (uneven shards included: 50 samples,
    batch 20 -> a last global batch of 10), only rank 0 writes the checkpoint and plot."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 12)).astype("float32")
    Y = rng.integers(0, 5, 50).astype("int32")
    model = mlp(seed=5)
    ck = os.path.join(path, "ck.npz")
    hist = gc.train.fit(model, X, Y, optimizer=gc.optim.Adam(1e-2), epochs=2, batch_size=20, verbose=0,
                        validation_data=(X[:7], Y[:7]), callbacks=[gc.train.ModelCheckpoint(ck)],
                        plot=os.path.join(path, f"plot{RANK}.png"))
    weights = [p.get_value() for p in model.params]
    same_on_every_rank(weights + [np.array(hist["loss"]), np.array(hist["val_accuracy"])], "fit")
    dist.barrier()
    assert os.path.exists(ck) and os.path.exists(os.path.join(path, "plot0.png"))
    assert not any(os.path.exists(os.path.join(path, f"plot{q}.png")) for q in range(1, SIZE))
    write_on_rank0(path, f"fit{SIZE}.json", weights, loss=hist["loss"], val_loss=hist["val_loss"])
    log("OK fit")


def check_steps(path: str) -> None:
    """fit with two compiled steps (an autoencoder step, and a decoder-only step every second
    batch, each with its own optimizer) under mpiexec: rank 0 writes the weights, which must equal
    one process's (uneven shards: 50 samples, batch 20)."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(50, 6)).astype("float32")
    enc = Sequential([Dense(3, activation="tanh", seed=7)], input_shape=(6,))
    dec = Sequential([Dense(6, seed=8)], input_shape=(3,))

    def ae(x, y, training):
        return {"loss": losses.mse(dec(enc(x, training), training), x)}

    def half(x, y, training):
        return {"half_loss": losses.mse(dec(enc(x, training), training), 0.5 * x)}

    steps = [gc.train.Step(ae, [enc, dec], gc.optim.Adam(1e-2), name="ae"),
             gc.train.Step(half, [dec], gc.optim.SGD(0.05, momentum=0.9), name="half", every=2)]
    hist = gc.train.fit(None, X, steps=steps, epochs=2, batch_size=20, verbose=0)
    assert all(isinstance(s.optimizer, dist.DistributedOptimizer) for s in steps) == (SIZE > 1)
    weights = [p.get_value() for p in enc.params + dec.params]
    same_on_every_rank(weights + [np.array(hist["loss"]), np.array(hist["half_loss"])], "steps")
    write_on_rank0(path, f"steps{SIZE}.json", weights, loss=hist["loss"], half_loss=hist["half_loss"])
    log("OK steps")


def check_resume(path: str) -> None:
    """Resume the checkpoint another job (another number of ranks) wrote; one more epoch must
    give the weights of one process resuming it."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 12)).astype("float32")
    Y = rng.integers(0, 5, 50).astype("int32")
    model = mlp(seed=99)  # other initial weights: everything must come from the checkpoint
    gc.train.fit(model, X, Y, optimizer=gc.optim.Adam(1e-2), epochs=3, batch_size=20, verbose=0,
                 resume_from=os.path.join(path, "ck.npz"))
    weights = [p.get_value() for p in model.params]
    same_on_every_rank(weights, "resume")
    if RANK == 0:
        with open(os.path.join(path, f"resume{SIZE}.json"), "w") as fh:
            json.dump([w.tolist() for w in weights], fh)
    log("OK resume")


def check_mnist(path: str) -> None:
    """fit on MNIST-5k (no dropout, so the run is deterministic); rank 0 writes the test accuracy."""
    ds = gc.data.load_mnist5k()
    model = Sequential([Dense(128, activation="relu", seed=1, name="h"), Dense(10, seed=2, name="o")],
                       input_shape=(784,))
    hist = gc.train.fit(model, ds.x_train, ds.y_train, optimizer=gc.optim.Adam(1e-3), epochs=3, batch_size=64,
                        verbose=0)
    test = hist.trainer.evaluate(ds.x_test, ds.y_test)
    if RANK == 0:
        with open(os.path.join(path, f"mnist{SIZE}.json"), "w") as fh:
            json.dump({"accuracy": test["accuracy"], "time": sum(hist["epoch_time"])}, fh)
    log(f"OK mnist test accuracy {test['accuracy']:.4f}")


# -- failures ------------------------------------------------------------------------------------


def check_raise() -> None:
    x = gc.placeholder("x", (2,))
    f = gc.function([x], dist.allreduce(x))
    f(np.ones(2, "float32"))
    if RANK == 1:
        raise RuntimeError("deliberate failure on rank 1")
    f(np.ones(2, "float32"))  # the other ranks wait here for rank 1, which will never come


def check_mismatch() -> None:
    width = 16 if RANK == 0 else 17  # rank 1 builds a layer of another shape
    model = Sequential([Dense(width, seed=1), Dense(3, seed=2)], input_shape=(4,))
    x = gc.placeholder("x", (None, 4))
    loss = gc.mean(gc.square(model(x)))
    opt = dist.DistributedOptimizer(gc.optim.SGD(0.1))
    f = gc.function([x], loss, updates=opt.updates(loss, model.params))
    f(np.ones((2, 4), "float32"))
    raise AssertionError("the mismatched graphs were not detected")


def check_absent() -> None:
    """Rank 1 never joins the collective (it runs a graph without one): the others must report
    it after $GRAPHC_MPI_TIMEOUT seconds instead of waiting forever."""
    x = gc.placeholder("x", (2,))
    f = gc.function([x], dist.allreduce(x) if RANK != 1 else x * 1.0)
    f(np.ones(2, "float32"))
    if RANK == 1:
        import time

        time.sleep(60)  # still alive, but elsewhere: the test's time-out is much shorter
    raise AssertionError("the missing rank was not detected")


CHECKS = {"absent": check_absent, "allreduce": check_allreduce, "allreduce_cuda": check_allreduce_cuda,
          "equivalence": check_equivalence,
          "optimizers": check_every_optimizer, "broadcast": check_broadcast, "dropout": check_dropout_streams,
          "raise": check_raise, "mismatch": check_mismatch}


def main(argv: list[str]) -> None:
    import time

    for arg in argv:
        t0 = time.perf_counter()
        name, _, value = arg.partition("=")
        if name == "--tag":  # only marks the processes of one launch
            continue
        if name == "fit":
            check_fit(value)
        elif name == "mnist":
            check_mnist(value)
        elif name == "steps":
            check_steps(value)
        elif name == "resume":
            check_resume(value)
        elif name == "equivalence" and value:
            check_equivalence(int(value))
        else:
            CHECKS[name]()
        log(f"  ({name}: {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])

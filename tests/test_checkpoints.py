"""Checkpoints keyed by structure (issue 15 item 6): rebuilding resumes, loads are all-or-nothing."""

import os

import numpy as np
import pytest

import graphc as gc
from graphc import optim, train
from graphc.nn import BatchNormalization, Dense, Sequential


def _blobs(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype("int32")
    x = (rng.normal(size=(n, 2)) + np.array([[0, 0], [3, 0], [0, 3]])[y]).astype("float32")
    return x, y


def _model():
    # no names: layers are numbered by a process-global counter, so each build gets new names
    return Sequential([Dense(8, activation="relu", seed=1), BatchNormalization(), Dense(3, seed=2)],
                      input_shape=(2,))


def test_rebuilt_model_resumes_in_the_same_process(tmp_path):
    x, y = _blobs()
    path = str(tmp_path / "ck.npz")

    def run(epochs, resume):
        model = _model()
        train.fit(model, x, y, optimizer=optim.Adam(0.01), epochs=epochs, batch_size=32, verbose=False,
                  callbacks=[train.ModelCheckpoint(path)], resume_from=path if resume else None)
        return model

    full = run(4, resume=False)
    os.remove(path)
    first = run(2, resume=False)
    resumed = run(4, resume=True)
    assert [w.name for w in first.weights] != [w.name for w in resumed.weights]  # really renamed
    for a, b in zip(full.weights, resumed.weights):
        np.testing.assert_allclose(a.get_value(), b.get_value(), rtol=1e-5, atol=1e-6)


def test_checkpoint_keys_are_structural():
    model = _model()
    t = train.Trainer(model, np.zeros((1, 2), "float32"), np.zeros(1, "int32"), optimizer=optim.Adam(0.01))
    keys = set(train.checkpoint_variables(t))
    assert {"model.layers.0.kernel", "model.layers.0.bias", "model.layers.1.moving_mean",
            "model.layers.2.kernel", "optimizer.iterations",
            "optimizer.layers.0.kernel.m", "optimizer.layers.2.bias.v"} <= keys
    assert len(keys) == len(t.variables)


def test_load_is_all_or_nothing(tmp_path):
    path = str(tmp_path / "ck.npz")
    a, b = gc.shared(np.arange(2, dtype="float32"), name="a"), gc.shared(np.arange(3, dtype="float32"), name="b")
    train.save_checkpoint(path, {"m.a": a, "m.b": b})
    a2 = gc.shared(np.full(2, 7, "float32"), name="a2")
    b_wrong_shape = gc.shared(np.full(4, 7, "float32"), name="b2")
    with pytest.raises(ValueError, match="m.b .* shape"):
        train.load_checkpoint(path, {"m.a": a2, "m.b": b_wrong_shape})
    np.testing.assert_array_equal(a2.get_value(), [7, 7])  # a fits, but nothing was written
    b_wrong_dtype = gc.shared(np.full(3, 7, "float64"), name="b3")
    with pytest.raises(ValueError, match="dtype float64"):
        train.load_checkpoint(path, {"m.a": a2, "m.b": b_wrong_dtype})
    np.testing.assert_array_equal(a2.get_value(), [7, 7])
    with pytest.raises(KeyError, match="nothing was loaded"):
        train.load_checkpoint(path, {"m.a": a2, "m.c": gc.shared(np.zeros(1, "float32"), name="c")})
    np.testing.assert_array_equal(a2.get_value(), [7, 7])
    train.load_checkpoint(path, {"m.a": a2, "m.b": gc.shared(np.zeros(3, "float32"), name="b4")})
    np.testing.assert_array_equal(a2.get_value(), [0, 1])


def test_name_keyed_checkpoints_still_load(tmp_path):
    # the format before structural keys: "var:<name>"; a keyed load falls back to the name
    path = str(tmp_path / "old.npz")
    np.savez(path, **{"var:dense_1/kernel": np.ones((2, 2), "float32"), "meta:epoch": np.asarray(3)})
    w = gc.shared(np.zeros((2, 2), "float32"), name="dense_1/kernel")
    assert train.load_checkpoint(path, {"model.layers.0.kernel": w})["epoch"] == 3
    np.testing.assert_array_equal(w.get_value(), np.ones((2, 2)))
    # and a keyed file loads by name with a plain list
    path2 = str(tmp_path / "new.npz")
    train.save_checkpoint(path2, {"model.layers.0.kernel": w})
    w.set_value(np.zeros((2, 2), "float32"))
    train.load_checkpoint(path2, [w])
    np.testing.assert_array_equal(w.get_value(), np.ones((2, 2)))


def test_resume_from_a_missing_path_is_an_error(tmp_path):
    x, y = _blobs(8)
    with pytest.raises(FileNotFoundError, match="resume_from=.*does not exist"):
        train.fit(_model(), x, y, epochs=1, verbose=False, resume_from=str(tmp_path / "nope.npz"))


def test_checkpoint_path_under_a_file_is_a_clear_error(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    w = gc.shared(np.zeros(2, "float32"), name="w")
    with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
        train.save_checkpoint(str(f / "sub" / "ck.npz"), [w])
    with pytest.raises(IsADirectoryError, match="is a directory"):
        train.save_checkpoint(str(tmp_path), [w])

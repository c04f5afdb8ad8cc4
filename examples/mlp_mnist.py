"""Train an MLP on MNIST-5k (4000 train / 1000 test images) with graphc's C backend.

    .venv/bin/python examples/mlp_mnist.py [--epochs 20] [--plot mlp_mnist.png]

Each minibatch step (forward, backward, Adam update) is one call into generated C. Unchanged, it
also trains data-parallel: `mpiexec -n 2 .venv/bin/python examples/mlp_mnist.py` (only rank 0
prints and plots).
"""

import argparse

import graphc as gc
from graphc import distributed as dist
from graphc.nn import Dense, Dropout, Sequential

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--epochs", type=int, default=20)
p.add_argument("--batch-size", type=int, default=64)
p.add_argument("--plot", default="mlp_mnist.png")
args = p.parse_args()

ds = gc.data.load_mnist5k(validation=0.1)          # pixels in [0, 1], int32 labels
model = Sequential([
    Dense(256, activation="relu"),
    Dropout(0.2),
    Dense(10),                                      # logits; the loss applies the softmax
], input_shape=(784,))
if dist.rank() == 0:  # under mpiexec every rank runs this script
    model.summary()

history = gc.train.fit(
    model, ds.x_train, ds.y_train,
    loss="categorical_crossentropy",               # integer labels: a fused softmax cross-entropy
    optimizer=gc.optim.Adam(1e-3),
    epochs=args.epochs, batch_size=args.batch_size,
    validation_data=(ds.x_val, ds.y_val),
    callbacks=[gc.train.EarlyStopping(monitor="val_accuracy", patience=5)],
    backend="c", plot=args.plot,                   # a progress bar on a terminal
)
test = history.trainer.evaluate(ds.x_test, ds.y_test)
if dist.rank() == 0:
    print(f"test accuracy {test['accuracy']:.4f}, test loss {test['loss']:.4f}")
    print(f"median epoch time {1000 * sorted(history['epoch_time'])[len(history['epoch_time']) // 2]:.1f} ms")
    print(f"wrote {args.plot}")

"""A character-level LSTM trained on Python's own documentation (`pydoc_data.topics`, which
every Python ships), then sampling text inside one compiled scan.

    .venv/bin/python examples/char_rnn.py [--steps 600] [--plot char_rnn.png]

Training: Embedding -> LSTM(256, return_sequences) -> Dense(vocab) on windows of 64 characters,
cross-entropy at every position, Adam. Sampling: a `gc.scan` over `--length` steps whose step
runs the trained cell on the previous character and draws the next one with the Gumbel-max
trick (`gc.random.uniform` inside the step draws fresh noise each step), so 400 characters
are one native call.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import graphc as gc
from graphc import nn


def load_text(n_chars: int = 300_000) -> str:
    from pydoc_data.topics import topics

    return "".join(topics[k] for k in sorted(topics))[:n_chars]


def build_sampler(emb: nn.Embedding, lstm: nn.LSTM, dense: nn.Dense, length: int, temperature: float):
    """A function (first character id, seed state) -> `length` sampled ids, one native call."""
    first = gc.placeholder("first", (1,), "int64")
    vocab = dense.units

    def step(prev, h, c):
        e = emb(gc.reshape(gc.cast(prev, "int32"), (1, 1)))  # the layer takes (batch, time) ids
        xw = lstm.input_projection(gc.reshape(e, (1, -1)))  # (1, 4 * units)
        h, (h, c) = lstm.cell(xw, [h, c], [h, c])
        logits = gc.reshape(dense(gc.reshape(h, (1, 1, -1))), (1, -1)) / temperature  # Dense was built on sequences
        gumbel = -gc.log(-gc.log(gc.random.uniform((1, vocab), seed=11, low=1e-7, high=1.0)))
        return gc.argmax(logits + gumbel, axis=1), h, c

    zeros = gc.constant(np.zeros((1, lstm.units), "float32"))
    ids, _, _ = gc.scan(step, outputs_info=[first, zeros, zeros], n_steps=length)
    return gc.function([first], ids)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--length", type=int, default=400, help="characters to sample")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--plot", default="char_rnn.png")
    args = p.parse_args(argv)

    text = load_text()
    chars = sorted(set(text))
    index = {ch: i for i, ch in enumerate(chars)}
    data = np.array([index[ch] for ch in text], "int32")
    vocab = len(chars)

    emb, lstm, dense = nn.Embedding(vocab, 64, seed=1), nn.LSTM(args.units, return_sequences=True, seed=2), \
        nn.Dense(vocab, seed=3)
    x = gc.placeholder("x", (None, None), "int32")
    y = gc.placeholder("y", (None, None), "int32")
    logits = dense(lstm(emb(x)))  # (batch, time, vocab)
    loss = gc.mean(gc.softmax_cross_entropy(gc.reshape(logits, (-1, vocab)), gc.reshape(y, (-1,))))
    params = emb.params + lstm.params + dense.params
    opt = gc.optim.Adam(3e-3, clipnorm=5.0)
    train_step = gc.function([x, y], loss, updates=opt.updates(loss, params))

    rng = np.random.default_rng(0)
    losses, start = [], time.perf_counter()
    for step in range(args.steps):
        starts = rng.integers(0, len(data) - args.window - 1, size=args.batch_size)
        windows = np.stack([data[s:s + args.window + 1] for s in starts])
        losses.append(float(train_step(windows[:, :-1], windows[:, 1:])))
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {losses[-1]:.3f}  ({time.perf_counter() - start:.1f} s)")
    seconds = time.perf_counter() - start

    sample = build_sampler(emb, lstm, dense, args.length, args.temperature)
    ids = sample(np.array([index["T"]], "int64"))
    text_out = "T" + "".join(chars[int(i)] for i in ids.reshape(-1))
    print("--- sample ---\n" + text_out + "\n--------------")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(losses, lw=0.8)
        ax.set(xlabel="step", ylabel="cross-entropy (nats/char)", title="char-LSTM on pydoc_data.topics")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        plt.close(fig)
        print(f"wrote {args.plot}")
    return {"first_loss": float(np.mean(losses[:10])), "last_loss": float(np.mean(losses[-20:])),
            "seconds": seconds, "sample": text_out}


if __name__ == "__main__":
    main()

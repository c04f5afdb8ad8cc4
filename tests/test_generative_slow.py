"""Generative models reach their quality targets on MNIST-5k (4000 train / 1000 test) and on the
8-Gaussian ring. Slow (about 10 minutes on the loaded 2-core VM); figures in benchmarks/RESULTS.md."""

from __future__ import annotations

import os

import numpy as np
import pytest

import graphc as gc
from tests.test_generative import load_example

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def c_backend_one_blas_thread():
    """Train as the examples do: on the C backend (tests/conftest.py makes the NumPy reference
    backend the default, 10-20x slower here) with one BLAS thread (the examples set
    OPENBLAS_NUM_THREADS=1 before NumPy loads, too late under pytest; a threaded OpenBLAS beside
    graphc's OpenMP pool stalls on the shared 2-core VM, benchmarks/RESULTS.md)."""
    import scipy_openblas32

    lib = scipy_openblas32.dll
    before, backend = lib.scipy_openblas_get_num_threads(), os.environ.get("GRAPHC_BACKEND")
    lib.scipy_openblas_set_num_threads(1)
    os.environ["GRAPHC_BACKEND"] = "c"
    yield
    lib.scipy_openblas_set_num_threads(before)
    if backend is None:
        os.environ.pop("GRAPHC_BACKEND", None)
    else:
        os.environ["GRAPHC_BACKEND"] = backend


@pytest.fixture(scope="module")
def mnist():
    ds = gc.data.load_mnist5k()
    ae = load_example("autoencoders")
    return ds, ae, ae.pca_mse(np.asarray(ds.x_train), np.asarray(ds.x_test))


def test_undercomplete_autoencoder_beats_pca_32_by_15_percent(mnist):
    ds, ae, base = mnist
    r = ae.train("undercomplete", ds, epochs=20)
    assert r["test_mse"] <= 0.85 * base, (r["test_mse"], base)


def test_conv_autoencoder_beats_pca_32_by_15_percent(mnist):
    ds, ae, base = mnist
    r = ae.train("conv", ds, epochs=30)  # measured 0.0071 against PCA's 0.0177
    assert r["test_mse"] <= 0.85 * base, (r["test_mse"], base)


def test_contractive_autoencoder_leaves_the_mean_image_plateau(mnist):
    # One sigmoid layer and a linear decoder: near PCA (measured 0.0185, 4% above PCA-32), far
    # below the mean-image plateau (0.067) where the sigmoid-decoder version stayed.
    ds, ae, base = mnist
    r = ae.train("contractive", ds, epochs=40)
    assert r["test_mse"] <= 1.10 * base, (r["test_mse"], base)


def test_vae_negative_elbo_matches_its_pytorch_twin():
    # Target: at most the twin's. Measured over 5 seeds (20 epochs): graphc 126.08 mean, the twin
    # 125.64 (seed 0: 125.66 vs 126.41); a seed's spread is about 0.4 nats, so the test compares
    # the means of 3 seeds with 0.5% of slack, which the Glorot-initialised VAE (127.09) failed.
    pytest.importorskip("torch")
    vae = load_example("vae_mnist")
    from benchmarks.vae_torch_twin import run

    ours = [vae.main(["--epochs", "20", "--seed", str(s), "--no-plots"])["test_nelbo"] for s in range(3)]
    theirs = [run(epochs=20, seed=s)["test_nelbo"] for s in range(3)]
    assert np.mean(ours) <= 1.005 * np.mean(theirs), (ours, theirs)
    assert max(ours) < 130.0


def test_gp0_gan_covers_the_ring_with_80_percent_high_quality_in_4_of_5_seeds():
    gan = load_example("gan_ring")
    runs = [gan.train("gp0", seed, **gan.DEFAULTS["gp0"]) for seed in range(5)]
    good = [r["modes"] == 8 and r["hq"] >= 0.8 for r in runs]
    assert sum(good) >= 4, [(r["modes"], round(r["hq"], 3)) for r in runs]


def test_vanilla_gan_drops_modes():
    gan = load_example("gan_ring")
    modes = [gan.train("vanilla", seed, **gan.DEFAULTS["vanilla"])["modes"] for seed in range(3)]
    assert max(modes) < 8, modes  # measured 6, 4, 7

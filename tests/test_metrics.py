import numpy as np
import torch

from lazydit.data import digits, from_uint8, to_uint8
from lazydit.metrics import class_accuracy, evaluate, frechet_distance, psnr


def test_shipped_classifier_recognises_held_out_digits():
    test = digits("test")
    assert class_accuracy(test.images, test.labels) > 0.95


def test_frechet_distance_is_zero_for_one_set_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8))
    assert abs(frechet_distance(a, a)) < 1e-6
    assert frechet_distance(a, a + 1.0) > frechet_distance(a, a + 0.1) > 0


def test_real_digits_score_near_the_floor_and_noise_far_above():
    test = digits("test")
    real = evaluate(test.images, test.labels)
    noise = evaluate(torch.rand_like(test.images) * 2 - 1, test.labels)
    for kind in ("cnn", "mlp"):
        assert real[f"fd_{kind}"] < 1e-6  # the test split against itself
        assert noise[f"fd_{kind}_ratio"] > 10
    assert noise["class_accuracy"] < 0.5


def test_psnr_and_uint8_round_trip():
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    assert psnr(x, x) > 150
    assert abs(psnr(x, x + 0.1) - 20 * np.log10(2 / 0.1)) < 1e-6
    back = from_uint8(to_uint8(x))
    assert (back - x).abs().max() <= 1 / 127.5 + 1e-6

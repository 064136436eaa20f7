"""`fercomp gan score`: how good are generated faces, judged by the project's own FER model.

Nothing is downloaded: instead of Inception features, a trained fercomp classifier supplies
  * class agreement: the share of generated images the classifier puts in the class they were
    drawn for (does conditioning work?), next to its accuracy on real held-out images;
  * a classifier score, exp(E_x KL(p(y|x) || p(y))) (the Inception Score with this classifier):
    high when each image is confidently one emotion and all emotions appear;
  * a Frechet distance between the classifier's penultimate-layer features of generated and
    real test images (FID with this classifier), with the distance between two disjoint real
    sets (train vs test) as the floor a perfect generator would reach.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import linalg

from ..deploy.runtime import TorchPredictor
from ..errors import ConfigError
from ..runs import Run
from ..train.evaluate import data_for_run
from .sample import load_generator, sample_images


def _last_linear(model: torch.nn.Module) -> torch.nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ConfigError("the classifier has no linear layer to take features from")
    return linears[-1]


def probabilities_and_features(predictor: TorchPredictor, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Softmax outputs and the input of the final linear layer, for uint8 images [N, H, W]."""
    captured: list[torch.Tensor] = []
    handle = _last_linear(predictor.model).register_forward_hook(lambda m, inputs, out: captured.append(inputs[0].flatten(1)))
    try:
        probs = predictor.predict_proba(images)
    finally:
        handle.remove()
    return probs, torch.cat(captured).numpy().astype(np.float64)


def classifier_score(probs: np.ndarray) -> float:
    marginal = probs.mean(0, keepdims=True)
    kl = (probs * (np.log(np.clip(probs, 1e-12, None)) - np.log(np.clip(marginal, 1e-12, None)))).sum(1)
    return float(np.exp(kl.mean()))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real  # numerical noise can leave tiny imaginary parts
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def score_generator(gan_run: str | Path, classifier_run: str | Path, per_class: int = 500, seed: int = 0,
                    data: str | None = None) -> dict:
    """Scores of generated images next to the same scores of real images (the reference)."""
    gen, gen_spec = load_generator(gan_run)
    classifier = Run.load(classifier_run)
    model, spec = classifier.load_model()
    if list(spec["class_names"]) != list(gen_spec["class_names"]):
        raise ConfigError(f"{classifier_run}: classes {spec['class_names']} differ from the generator's {gen_spec['class_names']}")
    predictor = TorchPredictor(model, spec)
    fer = data_for_run(classifier, data)
    real_test, real_train = fer.split("test"), fer.split("train")
    # The real reference set is as large as the generated one, so the distances are comparable.
    n = min(per_class * len(gen_spec["class_names"]), len(real_test), len(real_train))
    pick = np.random.default_rng(seed)
    train_sample = real_train.x[pick.choice(len(real_train), n, replace=False)]
    test_idx = pick.choice(len(real_test), n, replace=False)

    fake_x, fake_y = sample_images(gen, per_class, seed)
    fake_probs, fake_feats = probabilities_and_features(predictor, fake_x)
    test_probs, test_feats = probabilities_and_features(predictor, real_test.x[test_idx])
    _, train_feats = probabilities_and_features(predictor, train_sample)
    agreement = fake_probs.argmax(1) == fake_y
    names = list(gen_spec["class_names"])
    return {
        "gan_run": str(gan_run),
        "classifier_run": str(classifier_run),
        "images": int(len(fake_y)),
        "reference_images": int(n),
        "generated": {
            "class_agreement": float(agreement.mean()),
            "class_agreement_per_class": {c: float(agreement[fake_y == i].mean()) for i, c in enumerate(names)},
            "classifier_score": classifier_score(fake_probs),
            "frechet_distance": frechet_distance(fake_feats, test_feats),
        },
        "real": {
            "class_agreement": float((test_probs.argmax(1) == real_test.y[test_idx]).mean()),
            "classifier_score": classifier_score(test_probs),
            "frechet_distance": frechet_distance(train_feats, test_feats),
        },
    }

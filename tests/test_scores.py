"""Every score against a direct textbook computation on small random data (1e-6 relative), plus
known properties, input validation, torch/float32 inputs and the registry."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import torch
from sklearn.cluster import KMeans
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from hf_spider import scores
from hf_spider.errors import InvalidInputError

RTOL = 1e-6
CLASSIFICATION = [
    "gbc",
    "h_score",
    "h_score_shrink",
    "knn",
    "leep",
    "lfc",
    "logme",
    "nce",
    "nleep",
    "pactran",
    "sfda",
    "transrate",
]


def make_task(separation=1.0, n=120, d=6, classes=3, sources=5, seed=0):
    """Gaussian classes (means scaled by ``separation``, same noise for every separation), labels with
    arbitrary integer ids, and source-head probabilities: a softmax over distances to ``sources``
    prototypes (the scaled class means and random others)."""
    rng = np.random.default_rng(seed)
    codes = rng.permutation(np.arange(n) % classes)
    means = rng.standard_normal((classes, d)) * 2
    noise = rng.standard_normal((n, d))
    features = separation * means[codes] + noise
    prototypes = separation * np.r_[means, rng.standard_normal((sources - classes, d)) * 2]
    logits = -0.5 * ((features[:, None] - prototypes[None]) ** 2).sum(-1)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    labels = np.array([7, -2, 40, 11, 5][:classes])[codes]  # any ints, remapped to 0..C-1 inside
    return features, labels, probs / probs.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def task():
    return make_task()


def codes_of(labels):
    return np.unique(labels, return_inverse=True)[1]


# ----------------------------------------------------------------------------- LogME


def official_logme(f, y, regression=False):
    """thuml/LogME ``LogME.fit`` (``_fit_fixed_point``), transcribed: per-target evidences / n."""
    f = f.astype(np.float64)
    n, d = f.shape
    if n > d:  # truncated_svd: SVD of FᵀF, singular values above 1e-10
        _, s, vh = np.linalg.svd(f.T @ f)
        s = np.sqrt(s)
        k = int(np.sum(s > 1e-10))
        u, s = (f @ vh.T)[:, :k] / s[:k], s[:k].reshape(-1, 1)
    else:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
        s = s.reshape(-1, 1)
    sigma = s**2
    targets = y.reshape(n, -1).T if regression else [(y == c).astype(np.float64) for c in range(int(y.max()) + 1)]
    evidences = []
    for y_ in targets:
        y_ = y_.reshape(-1, 1)
        x = u.T @ y_
        x2 = x**2
        res_x2 = (y_**2).sum() - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            t_ = alpha / beta
            if abs(t_ - t) / t <= 1e-3:
                break
        evidence = (d / 2.0 * np.log(alpha) + n / 2.0 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * sigma))
                    - beta / 2.0 * res2 - alpha / 2.0 * m2 - n / 2.0 * np.log(2 * np.pi))
        evidences.append(evidence / n)
    return np.array(evidences)


@pytest.mark.parametrize(
    "shape", [(120, 6), (30, 50), (200, 70), (80, 120), (3000, 256)],
    ids=["n>d", "n<d", "n>d-lapack", "n<d-lapack", "3000x256"],
)
def test_logme_equals_the_official_fixed_point(shape):
    f, labels, _ = make_task(n=shape[0], d=shape[1])
    fit = scores.logme_fit(f, labels)
    np.testing.assert_allclose(fit.evidence, official_logme(f, codes_of(labels)), rtol=0, atol=1e-6)
    assert scores.logme(f, labels) == pytest.approx(np.mean(official_logme(f, codes_of(labels))), abs=1e-6)


@pytest.mark.parametrize("signal", [1.0, 0.0], ids=["signal", "no-signal"])
@pytest.mark.parametrize("shape", [(120, 6), (3000, 256), (40, 90)], ids=["n>d", "3000x256", "n<d"])
def test_logme_regression_equals_the_official_fixed_point(shape, signal):
    """Real targets, explained by the features or pure noise (where the guards decide the result)."""
    f, _, _ = make_task(n=shape[0], d=shape[1])
    rng = np.random.default_rng(1)
    targets = signal * f @ rng.standard_normal((shape[1], 2)) + 0.3 * rng.standard_normal((shape[0], 2))
    fit = scores.logme_fit(f, targets, regression=True)
    np.testing.assert_allclose(fit.evidence, official_logme(f, targets, regression=True), rtol=0, atol=1e-6)
    one = scores.logme(f, targets[:, 0], regression=True)  # [n] targets
    assert one == pytest.approx(official_logme(f, targets[:, :1], regression=True)[0], abs=1e-6)


def test_logme_ranks_explained_targets_above_noise():
    f, _, _ = make_task()
    rng = np.random.default_rng(1)
    explained = f @ rng.standard_normal(6) + 0.3 * rng.standard_normal(120)
    assert scores.logme(f, explained, regression=True) > scores.logme(f, rng.standard_normal(120),
                                                                         regression=True) + 0.5


# ----------------------------------------------------------------------------- source-probability scores


def leep_loops(theta, labels):
    codes = codes_of(labels)
    n, n_source = theta.shape
    classes = codes.max() + 1
    joint = np.zeros((classes, n_source))
    for i in range(n):
        for z in range(n_source):
            joint[codes[i], z] += theta[i, z] / n
    total = 0.0
    for i in range(n):
        eep = sum(joint[codes[i], z] / joint[:, z].sum() * theta[i, z] for z in range(n_source))
        total += np.log(eep)
    return total / n


def test_leep_matches_loops(task):
    _, labels, probs = task
    np.testing.assert_allclose(scores.leep(probs, labels), leep_loops(probs, labels), rtol=RTOL)


def test_nce_matches_joint_counts(task):
    _, labels, probs = task
    z = probs.argmax(1)
    n = len(labels)
    counts = {}
    for y_i, z_i in zip(labels, z, strict=True):
        counts[(y_i, z_i)] = counts.get((y_i, z_i), 0) + 1
    z_counts = {zz: sum(c for (_, z2), c in counts.items() if z2 == zz) for zz in set(z)}
    expected = sum(c / n * np.log(c / z_counts[zz]) for (_, zz), c in counts.items())
    np.testing.assert_allclose(scores.nce(probs, labels), expected, rtol=RTOL)


def test_leep_and_nce_are_at_most_zero(task):
    _, labels, probs = task
    assert scores.leep(probs, labels) < 0
    assert scores.nce(probs, labels) <= 0
    # a perfect source head (z = y) gives NCE = 0
    assert scores.nce(np.eye(3)[codes_of(labels)], labels) == 0.0


def gmm_theta(f, classes):
    """PCA(80%) -> k-means (random init) -> diagonal GaussianMixture initialised from the k-means labels."""
    z = PCA(n_components=0.8, svd_solver="covariance_eigh").fit_transform(f)
    k = 5 * classes
    labels = KMeans(n_clusters=k, init="random", n_init=1, random_state=0).fit(z).labels_
    resp = np.eye(k)[labels]
    counts = resp.sum(0) + 10 * np.finfo(float).eps
    means = resp.T @ z / counts[:, None]
    var = np.stack([resp[:, j] @ (z - means[j]) ** 2 for j in range(k)]) / counts[:, None] + 1e-6
    gmm = GaussianMixture(
        n_components=k,
        covariance_type="diag",
        tol=1e-2,
        random_state=0,
        weights_init=counts / counts.sum(),
        means_init=means,
        precisions_init=1 / var,
    )
    return gmm.fit(z).predict_proba(z)


def test_nleep_is_leep_of_pca_gmm_posterior(task):
    f, labels, _ = task
    np.testing.assert_allclose(scores.nleep(f, labels), leep_loops(gmm_theta(f, 3), labels), rtol=RTOL)


def pac_dir_reference(prob, codes, alpha=1.0):
    """The PACTran-Dirichlet estimator as written in the authors' code, negated (higher = better)."""
    label = np.eye(codes.max() + 1)[codes]
    a0 = alpha * label.sum(0)[:, None] / label.sum() + 1e-10
    qz, log_s = prob, np.log(prob + 1e-10)
    for _ in range(10):
        aw = a0 + np.sum(np.einsum("BY,BZ->BYZ", label, qz), axis=0)
        logits = log_s + label @ scipy.special.digamma(aw) - scipy.special.digamma(aw.sum(0))[None]
        log_qz = logits - scipy.special.logsumexp(logits, axis=-1, keepdims=True)
        qz = np.exp(log_qz)
    log_c0 = scipy.special.loggamma(a0.sum()) - scipy.special.loggamma(a0).sum()
    log_c = scipy.special.loggamma(aw.sum(0)) - scipy.special.loggamma(aw).sum(0)
    return np.sum(log_c0 - log_c - np.sum(qz * (log_qz - log_s), axis=0)) / label.size


def pac_gamma_reference(prob, codes, alpha=1.0):
    label = np.eye(codes.max() + 1)[codes]
    a0 = alpha * label.sum(0)[:, None] / label.sum() + 1e-10
    qz, log_s = prob, np.log(prob + 1e-10)
    for _ in range(10):
        aw = a0 + np.sum(np.einsum("BY,BZ->BYZ", label, qz), axis=0)
        lw = prob @ aw.sum(0)[:, None]
        logits = log_s + label @ scipy.special.digamma(aw)
        log_qz = logits - scipy.special.logsumexp(logits, axis=-1, keepdims=True)
        qz = np.exp(log_qz)
    bound = np.sum(scipy.special.loggamma(a0) - scipy.special.loggamma(aw)) + np.sum(
        np.sum(qz * (log_qz - log_s), axis=-1) + np.log(lw[:, 0]) - 1.0
    )
    return -(bound / label.size + 1.0)


def test_pactran_matches_authors_estimators(task):
    f, labels, probs = task
    codes = codes_of(labels)
    np.testing.assert_allclose(
        scores.pactran(labels=labels, source_probs=probs), pac_dir_reference(probs, codes), rtol=RTOL
    )
    np.testing.assert_allclose(
        scores.pactran(labels=labels, source_probs=probs, alpha=10.0),
        pac_dir_reference(probs, codes, alpha=10.0),
        rtol=RTOL,
    )
    np.testing.assert_allclose(
        scores.pactran(labels=labels, source_probs=probs, variant="gamma"), pac_gamma_reference(probs, codes), rtol=RTOL
    )
    # from features: the N-LEEP mixture posterior plays the source head
    expected = pac_dir_reference(gmm_theta(f, 3), codes)
    np.testing.assert_allclose(scores.pactran(f, labels), expected, rtol=RTOL)


# ----------------------------------------------------------------------------- feature scores


def class_mean_matrix(f, labels):
    g = np.zeros_like(f)
    for c in np.unique(labels):
        g[labels == c] = f[labels == c].mean(0)
    return g


def test_h_score_matches_explicit_covariances(task):
    f, labels, _ = task
    expected = np.trace(
        np.linalg.pinv(np.cov(f, rowvar=False), rcond=1e-15) @ np.cov(class_mean_matrix(f, labels), rowvar=False)
    )
    np.testing.assert_allclose(scores.h_score(f, labels), expected, rtol=RTOL)


def test_h_score_shrink_matches_ledoit_wolf(task):
    f, labels, _ = task
    fc = f - f.mean(0)
    lw = LedoitWolf().fit(fc)
    expected = np.trace(
        np.linalg.pinv(lw.covariance_, rcond=1e-15)
        @ ((1 - lw.shrinkage_) * np.cov(class_mean_matrix(fc, labels), rowvar=False))
    )
    np.testing.assert_allclose(scores.h_score_shrink(f, labels), expected, rtol=RTOL)


def test_h_score_invariant_to_feature_permutation(task):
    f, labels, _ = task
    perm = np.random.default_rng(3).permutation(f.shape[1])
    np.testing.assert_allclose(scores.h_score(f[:, perm], labels), scores.h_score(f, labels), rtol=1e-10)
    np.testing.assert_allclose(scores.h_score_shrink(f[:, perm], labels), scores.h_score_shrink(f, labels), rtol=1e-10)


def test_h_score_decomposition_path():
    """d >= 64 takes the tridiagonal (dsytrd + MRRR) eigen path on CPU."""
    f, labels, _ = make_task(n=300, d=80, classes=4)
    expected = np.trace(
        np.linalg.pinv(np.cov(f, rowvar=False), rcond=1e-15) @ np.cov(class_mean_matrix(f, labels), rowvar=False)
    )
    np.testing.assert_allclose(scores.h_score(f, labels), expected, rtol=RTOL)


def test_gbc_matches_pairwise_bhattacharyya_loop(task):
    f, labels, _ = task
    z = PCA(n_components=6, svd_solver="covariance_eigh").fit_transform(f)  # min(64, d)
    stats = {c: (z[labels == c].mean(0), np.maximum(z[labels == c].var(0), 1e-4)) for c in np.unique(labels)}
    total = 0.0
    for c1, (mu1, var1) in stats.items():
        for c2, (mu2, var2) in stats.items():
            if c1 != c2:
                avg = (var1 + var2) / 2
                log_term = np.sum(np.log(avg)) - 0.5 * np.sum(np.log(var1)) - 0.5 * np.sum(np.log(var2))
                dist = np.sum((mu1 - mu2) ** 2 / avg) / 8 + 0.5 * log_term
                total += np.exp(-dist)
    np.testing.assert_allclose(scores.gbc(f, labels), -total, rtol=RTOL)
    # spherical: one variance per class
    sph = 0.0
    for c1, (mu1, var1) in stats.items():
        for c2, (mu2, var2) in stats.items():
            if c1 != c2:
                s1, s2 = var1.mean(), var2.mean()
                avg = (s1 + s2) / 2
                k = len(mu1)
                sph += np.exp(
                    -(
                        np.sum((mu1 - mu2) ** 2) / avg / 8
                        + 0.5 * k * (np.log(avg) - 0.5 * np.log(s1) - 0.5 * np.log(s2))
                    )
                )
    np.testing.assert_allclose(scores.gbc(f, labels, gaussian_type="spherical"), -sph, rtol=RTOL)


def coding_rate(z, eps):
    m, d = z.shape
    return 0.5 * np.linalg.slogdet(np.eye(d) + d / (m * eps**2) * z.T @ z)[1]


@pytest.mark.parametrize("shape", [(120, 6), (60, 40)], ids=["small-d", "class-rows<d"])
def test_transrate_matches_explicit_logdet(shape):
    f, labels, _ = make_task(n=shape[0], d=shape[1])
    z = f - f.mean(0)
    for eps in (1e-4, 0.1):
        expected = coding_rate(z, eps) - sum(
            (labels == c).mean() * coding_rate(z[labels == c], eps) for c in np.unique(labels)
        )
        np.testing.assert_allclose(scores.transrate(f, labels, eps=eps), expected, rtol=RTOL)


def test_transrate_unbalanced_classes():
    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1, 2, 3], [50, 7, 20, 3])
    f = rng.standard_normal((80, 12)) + labels[:, None]
    z = f - f.mean(0)
    expected = coding_rate(z, 1e-4) - sum((labels == c).mean() * coding_rate(z[labels == c], 1e-4) for c in range(4))
    np.testing.assert_allclose(scores.transrate(f, labels), expected, rtol=RTOL)


def sfda_reference(x, y):
    """The SFDA estimator as written in the authors' code: generalised eigenvectors, loops over classes."""
    x = x.copy()

    def iterative_a(a, max_iterations=3):
        v = a.sum(axis=1)
        for _ in range(max_iterations):
            w = a @ v
            w = w / np.linalg.norm(w)
            v = a @ w
            v = v / np.linalg.norm(v)
        return v @ a @ w

    def fit_predict(x, shrinkage):
        classes = np.unique(y)
        priors = np.array([(y == c).mean() for c in classes])
        means = np.array([x[y == c].mean(0) for c in classes])
        sw = sum(p * np.cov(x[y == c].T, bias=1) for p, c in zip(priors, classes, strict=True))
        if shrinkage is None:
            shrinkage = max(np.exp(-5 * iterative_a(sw)), 1e-10)
        d = x.shape[1]
        st = (1 - shrinkage) * np.cov(x.T, bias=1) + shrinkage * np.trace(np.cov(x.T, bias=1)) / d * np.eye(d)
        shrunk_sw = (1 - shrinkage) * sw + shrinkage * np.trace(sw) / d * np.eye(d)
        evals, evecs = scipy.linalg.eigh(st - shrunk_sw, shrunk_sw)
        evecs = evecs[:, np.argsort(evals)[::-1]]
        coef = means @ evecs @ evecs.T
        intercept = -0.5 * np.diag(means @ coef.T) + np.log(priors)
        return scipy.special.softmax(x @ coef.T + intercept, axis=1), means, shrinkage

    prob, means, shrinkage = fit_predict(x, None)
    prob = np.exp(prob) / np.exp(prob).sum(axis=1, keepdims=True)
    classes = len(means)
    for c in range(classes):
        others = (means.sum(0) - means[c]) / (classes - 1)
        p = prob[y == c, c][:, None]
        x[y == c] = p * x[y == c] + (1 - p) * others
    prob, _, _ = fit_predict(x, shrinkage)
    return prob[np.arange(len(y)), y].mean()


def test_sfda_matches_authors_estimator():
    for scale in (0.3, 1.0):  # exercises both a real and a 1e-10 (floored) shrinkage
        f, labels, _ = make_task(separation=0.5)
        expected = sfda_reference(scale * f, codes_of(labels))
        np.testing.assert_allclose(scores.sfda(scale * f, labels), expected, rtol=RTOL)


def knn_loop(f, labels, k):
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    correct = 0
    for i in range(len(f)):
        sim = unit @ unit[i]
        sim[i] = -np.inf
        nearest = np.argsort(-sim, kind="stable")[:k]
        votes = {}
        for rank, j in enumerate(nearest):
            count, first = votes.get(labels[j], (0, rank))
            votes[labels[j]] = (count + 1, first)
        # most votes; among equal votes, the class holding the nearer neighbour
        winner = max(votes, key=lambda c: (votes[c][0], -votes[c][1]))
        correct += winner == labels[i]
    return correct / len(f)


@pytest.mark.parametrize("k", [1, 4, 5])
def test_knn_matches_loop(k):
    f, labels, _ = make_task(separation=0.3, n=150, d=5)
    expected = knn_loop(f, labels, k)
    assert 0.3 < expected < 0.95  # neither trivial nor perfect
    assert scores.knn(f, labels, k=k) == pytest.approx(expected, abs=1e-12)


def test_lfc_matches_explicit_kernels(task):
    f, labels, _ = task
    kernel = f @ f.T
    label_kernel = np.where(labels[:, None] == labels[None, :], 1.0, -1.0)
    expected = np.corrcoef(kernel.ravel(), label_kernel.ravel())[0, 1]
    np.testing.assert_allclose(scores.lfc(f, labels), expected, rtol=RTOL)
    small = f[:30, :2]
    expected = np.corrcoef((small @ small.T).ravel(), label_kernel[:30, :30].ravel())[0, 1]
    np.testing.assert_allclose(scores.lfc(small, labels[:30]), expected, rtol=RTOL)


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize("name", [*CLASSIFICATION, "pactran-from-features"])
def test_scores_increase_with_class_separation(name):
    values = []
    for separation in (0.25, 0.5, 1.0, 2.0):
        f, labels, probs = make_task(separation=separation, n=150, d=5)
        if name == "pactran-from-features":
            values.append(scores.pactran(f, labels))
        else:
            values.append(scores.score(name, features=f, labels=labels, source_probs=probs))
    assert values[0] < values[1] < values[2] < values[3], values


def test_torch_input_gives_numpy_value(task):
    f, labels, probs = task
    for name in CLASSIFICATION:
        expected = scores.score(name, features=f, labels=labels, source_probs=probs)
        got = scores.score(
            name, features=torch.from_numpy(f), labels=torch.from_numpy(labels), source_probs=torch.from_numpy(probs)
        )
        assert got == pytest.approx(expected, rel=1e-10, abs=1e-12), name


def test_float32_input(task):
    f, labels, probs = task
    f32, p32 = f.astype(np.float32), probs.astype(np.float32)
    for name in CLASSIFICATION:
        value = scores.score(name, features=f32, labels=labels, source_probs=p32)
        # float32 values are widened exactly: same as the float64 copy of the float32 data ...
        widened = scores.score(
            name,
            features=f32.astype(np.float64),
            labels=labels,
            source_probs=(p32 / p32.sum(1, keepdims=True, dtype=np.float64)),
        )
        assert value == pytest.approx(widened, rel=1e-10, abs=1e-12), name
        # ... and close to the float64 value
        assert value == pytest.approx(
            scores.score(name, features=f, labels=labels, source_probs=probs), rel=1e-3, abs=1e-5
        ), name
    half = torch.from_numpy(f).to(torch.bfloat16)
    assert np.isfinite(scores.logme(half, labels))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_input_matches_cpu(task):
    f, labels, probs = task
    for name in CLASSIFICATION:
        expected = scores.score(name, features=f, labels=labels, source_probs=probs)
        got = scores.score(
            name,
            features=torch.from_numpy(f).cuda(),
            labels=torch.from_numpy(labels).cuda(),
            source_probs=torch.from_numpy(probs).cuda(),
        )
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-9), name


# ----------------------------------------------------------------------------- validation and registry


def test_registry():
    assert scores.available() == sorted(CLASSIFICATION)
    assert scores.available(regression=True) == ["logme"]
    assert scores.available("h_*") == ["h_score", "h_score_shrink"]
    assert scores.get("logme") is scores.logme
    info = scores.info("leep")
    assert info.needs == {"source_probs"} and not info.regression
    assert scores.info("pactran").uses == {"features", "source_probs"}
    with pytest.raises(InvalidInputError, match="unknown score 'logmee'"):
        scores.get("logmee")
    with pytest.raises(ValueError, match="already registered"):
        scores.register_score("logme")(lambda features, labels: 0.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f, y, p: scores.logme(f, np.zeros(len(f), int)), "only one class"),
        (lambda f, y, p: scores.logme(np.where(np.eye(*f.shape, dtype=bool), np.nan, f), y), "NaN"),
        (lambda f, y, p: scores.h_score(np.where(np.eye(*f.shape, dtype=bool), np.inf, f), y), "infinite"),
        (lambda f, y, p: scores.gbc(f, y[:-1]), "labels have 119 entries but the inputs have 120 rows"),
        (lambda f, y, p: scores.gbc(f, np.r_[y[:-1], 99]), "class 99 has 1 sample"),
        (
            lambda f, y, p: scores.score("gbc", features=f, labels=f[:, 0], regression=True),
            "supports classification only",
        ),
        (lambda f, y, p: scores.gbc(f, f[:, 0]), "integer class ids"),
        (lambda f, y, p: scores.leep(2 * p, y), "rows must sum to 1"),
        (lambda f, y, p: scores.leep(-p, y), ">= 0"),
        (lambda f, y, p: scores.logme(f[:, 0], y), "must be 2-D"),
        (lambda f, y, p: scores.logme(f[None], y), "must be 2-D"),
        (lambda f, y, p: scores.logme(f, y[:, None]), "must be 1-D"),
        (lambda f, y, p: scores.logme(f, f[:, :2].T, regression=True), "labels have 2 entries"),
        (lambda f, y, p: scores.logme(f.astype(complex), y), "real numbers"),
        (lambda f, y, p: scores.knn(f, y, k=len(f)), "k must be in"),
        (lambda f, y, p: scores.score("logme", labels=y), "needs features"),
        (lambda f, y, p: scores.score("leep", features=f, labels=y), "needs source_probs"),
        (lambda f, y, p: scores.score("pactran", labels=y), "needs one of"),
        (lambda f, y, p: scores.transrate(f, y, eps=0), "eps must be > 0"),
        (lambda f, y, p: scores.logme(f, None), "labels are required"),
    ],
)
def test_validation_messages(task, call, message):
    f, labels, probs = task
    with pytest.raises(InvalidInputError, match=message):
        call(f, labels, probs)


def test_logme_stays_finite_when_features_interpolate_the_targets():
    """Few-shot: with n <= d the features can fit a one-hot target exactly (beta -> inf); duplicated
    rows make F Fᵀ singular too. The evidence must stay finite (regression guard for few-shot bench)."""
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(5), 3)
    features = np.maximum(rng.normal(size=(15, 64)), 0)
    features[1] = features[0]  # a duplicated image
    fit = scores.logme_fit(features, y)
    assert np.isfinite(fit.evidence).all() and np.isfinite(fit.alpha).all() and np.isfinite(fit.beta).all()
    assert np.isfinite(scores.score("logme", features=features, labels=y))

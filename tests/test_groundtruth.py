"""Ground truth: the linear probe against a direct scikit-learn computation; fine-tuning on planted tasks
(a model whose frozen features are useless); the per-protocol ground-truth store of ``bench``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
from conftest import FIXTURES
from safetensors.torch import load_file, save_file
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from hf_spider.backbones import load_backbone, model_key
from hf_spider.bench import (
    FINE_TUNE,
    GROUND_TRUTH_PROTOCOLS,
    LINEAR_PROBE,
    GroundTruthStore,
    model_id,
    run_bench,
    target_id,
)
from hf_spider.constants import MICRO_ZOO
from hf_spider.errors import InvalidInputError
from hf_spider.features import extract_features
from hf_spider.groundtruth import fine_tune, linear_probe
from hf_spider.tasks import load_task, task_from_arrays

ZOO = MICRO_ZOO / "models"


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only add contention


def _gaussian_task(rng, n, separation, d=8, classes=3):
    y = rng.integers(0, classes, n)
    centers = rng.normal(size=(classes, d)) * separation
    return centers[y] + rng.normal(size=(n, d)), y


def test_linear_probe_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    x, y = _gaussian_task(rng, 300, 1.0)
    xt, yt = _gaussian_task(np.random.default_rng(0), 300, 1.0)  # same centres: a real test split
    xt, yt = xt[:100] + rng.normal(size=(100, 8)) * 0.1, yt[:100]
    result = linear_probe(x, y, xt, yt, grid=(0.01, 1.0), seed=0)

    x_fit, x_val, y_fit, y_val = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    val = {}
    for c in (0.01, 1.0):
        scaler = StandardScaler().fit(x_fit)
        clf = LogisticRegression(C=c, max_iter=2000, random_state=0).fit(scaler.transform(x_fit), y_fit)
        val[c] = (clf.predict(scaler.transform(x_val)) == y_val).mean()
    best = max((0.01, 1.0), key=val.__getitem__)
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=best, max_iter=2000, random_state=0).fit(scaler.transform(x), y)
    expected = (clf.predict(scaler.transform(xt)) == yt).mean()

    assert result.regularisation == best
    assert result.validation_scores == pytest.approx(val)
    assert result.score == pytest.approx(expected)
    assert result.metric == "accuracy"


def test_better_separated_features_probe_better():
    low = linear_probe(*_gaussian_task(np.random.default_rng(1), 300, 0.2),
                       *_gaussian_task(np.random.default_rng(1), 300, 0.2))
    high = linear_probe(*_gaussian_task(np.random.default_rng(1), 300, 3.0),
                        *_gaussian_task(np.random.default_rng(1), 300, 3.0))
    assert high.score > low.score + 0.2


def test_regression_probe_is_ridge_r2():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 5))
    y = x @ rng.normal(size=5) + 0.1 * rng.normal(size=200)
    result = linear_probe(x[:150], y[:150], x[150:], y[150:], regression=True, grid=(1.0,))
    scaler = StandardScaler().fit(x[:150])
    ridge = Ridge(alpha=1.0).fit(scaler.transform(x[:150]), y[:150])
    assert result.metric == "r2"
    assert result.score == pytest.approx(r2_score(y[150:], ridge.predict(scaler.transform(x[150:]))))
    assert result.score > 0.95


def test_mismatched_rows_are_refused():
    with pytest.raises(InvalidInputError, match="same number of rows"):
        linear_probe(np.zeros((10, 2)), np.zeros(9), np.zeros((4, 2)), np.zeros(4))


# ------------------------------------------------------------------------------------------ fine-tuning


def _colour_task(n_per_class: int, seed: int):
    """3 classes: noisy red, green or blue 32x32 images of the same brightness (trivially separable in colour)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n_per_class)
    images = rng.integers(0, 60, size=(len(labels), 32, 32, 3))
    images[np.arange(len(labels)), :, :, labels] += 150
    return task_from_arrays(images.astype(np.uint8), labels, class_names=["red", "green", "blue"])


def _colour_blind(folder: Path, name: str, stem: str) -> str:
    """A copy of zoo model ``name`` whose first layer ``stem`` weighs R, G and B alike: it sees grey only."""
    folder.mkdir()
    shutil.copy(ZOO / name / "config.json", folder / "config.json")
    weights = load_file(ZOO / name / "model.safetensors")
    weights[stem] = weights[stem].float().mean(1, keepdim=True).expand_as(weights[stem]).to(weights[stem].dtype)
    save_file({k: v.contiguous() for k, v in weights.items()}, folder / "model.safetensors")
    return str(folder)


@pytest.mark.parametrize(("name", "stem"), [("resnet10-tiny-animals", "conv1.0.weight"),
                                            ("vit-short-breeze", "patch_embed.proj.weight")])
def test_fine_tuning_learns_what_frozen_features_cannot(tmp_path, name, stem):
    model = _colour_blind(tmp_path / name, name, stem)
    train, test = _colour_task(40, seed=0), _colour_task(20, seed=1)
    frozen = [extract_features(model, t, progress=False).features for t in (train, test)]
    assert linear_probe(frozen[0], train.labels, frozen[1], test.labels).score < 0.5  # colour-blind: chance

    result = fine_tune(model, train, test, lrs=(1e-7, 1e-2), epochs=6, device="cpu")
    # the planted best learning rate wins on validation: 1e-7 cannot make the first layer see colour
    assert result.lr == 1e-2 and result.validation_scores[1e-7] < 0.6 < 0.9 < result.validation_scores[1e-2]
    assert result.score > 0.9 and result.metric == "accuracy" and 1 <= result.epoch <= 6
    assert fine_tune(model, train, test, lrs=(1e-7, 1e-2), epochs=6, device="cpu") == result  # seeded


def test_fine_tuning_starts_from_the_linear_probe():
    """With a negligible learning rate, a model without BatchNorm keeps its features, and the fine-tuned
    model predicts like the head it starts from: a logistic regression (C=1) on the standardised
    features of the fitting rows (the stratified 80% of train), recomputed here with scikit-learn."""
    model = str(ZOO / "vit-short-breeze")
    train, test = load_task(FIXTURES / "digits-mini", split="train"), load_task(FIXTURES / "digits-mini", split="test")
    x, xt = (extract_features(model, t, progress=False).features for t in (train, test))
    fit, _ = train_test_split(np.arange(len(train)), test_size=0.2, random_state=0, stratify=train.labels)
    scaler = StandardScaler().fit(x[fit])
    probe = LogisticRegression(C=1.0, max_iter=2000, random_state=0).fit(scaler.transform(x[fit]), train.labels[fit])
    expected = (probe.predict(scaler.transform(xt)) == test.labels).mean()
    result = fine_tune(model, train, test, lrs=(1e-9,), epochs=1, device="cpu")
    assert result.score == pytest.approx(expected, abs=1e-9) and result.epoch == 1


def test_fine_tuning_regression_reports_r2():
    rng = np.random.default_rng(3)
    brightness = rng.uniform(0, 1, 300).astype(np.float32)  # the target: each grey image's brightness
    images = (brightness[:, None, None, None] * 200 + rng.integers(0, 40, (300, 32, 32, 3))).astype(np.uint8)
    train = task_from_arrays(images[:200], brightness[:200], regression=True)
    test = task_from_arrays(images[200:], brightness[200:], regression=True)
    result = fine_tune(str(ZOO / "resnet10-tiny-animals"), train, test, lrs=(1e-2,), epochs=8, device="cpu")
    assert result.metric == "r2" and result.score > 0.9, result
    assert list(result.validation_scores) == [1e-2] and result.validation_scores[1e-2] > 0.9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"lrs": ()}, "positive lrs"), ({"lrs": (0.0,)}, "positive lrs"), ({"epochs": 0}, "epochs >= 1"),
     ({"batch_size": 1}, "batch_size >= 2")],
)
def test_fine_tune_validates_options(kwargs, match):
    task = _colour_task(4, seed=0)
    with pytest.raises(InvalidInputError, match=match):
        fine_tune("no-such-model", task, task, **kwargs)


def test_fine_tuning_pixels_are_decoded_a_batch_at_a_time(monkeypatch):
    import torch

    from hf_spider.groundtruth import _Pixels

    task = load_task(str(FIXTURES / "digits-mini"), split="train")
    backbone = load_backbone(str(ZOO / "resnet10-tiny-animals"), device="cpu")
    decoded = []
    image = type(task).image
    monkeypatch.setattr(type(task), "image", lambda self, i: decoded.append(i) or image(self, i))
    pixels = _Pixels(backbone.transform, task).subset(torch.tensor([5, 3, 9, 1, 7]))
    assert decoded == []  # nothing decoded up front
    order = [torch.tensor([4, 0]), torch.tensor([2, 3, 1])]
    first = next(iter(pixels.batches(order)))
    assert decoded == [7, 5] and first.shape[0] == 2  # one batch: its rows, in its order
    expected = torch.stack([backbone.transform(image(task, i)) for i in (7, 5)])
    assert torch.equal(first, expected)


def test_fine_tune_refuses_mixed_task_kinds():
    task = _colour_task(4, seed=0)
    real = task_from_arrays(np.zeros((4, 8, 8), np.uint8), np.arange(4, dtype=np.float32), regression=True)
    with pytest.raises(InvalidInputError, match="must both be classification or both regression"):
        fine_tune("no-such-model", task, real)


# ------------------------------------------------------------------------------------------ the store


def test_bench_computes_fine_tuning_ground_truth_beside_the_linear_probe(tmp_path):
    zoo = [str(ZOO / "resnet10-tiny-animals"), str(ZOO / "convnext-short-wesnoth")]
    target, gt_file = str(FIXTURES / "digits-mini"), tmp_path / "gt.json"
    report = run_bench(zoo, [target], methods=["knn"], ground_truth=GroundTruthStore(gt_file),
                       ground_truth_protocol=FINE_TUNE, progress=False)
    stored = json.loads(gt_file.read_text())
    protocol = GROUND_TRUTH_PROTOCOLS[FINE_TUNE]
    assert stored["version"] == 4 and stored["protocols"] == {FINE_TUNE: {**protocol.identity,
                                                                          "description": protocol.description}}
    train, test = load_task(target, split="train"), load_task(target, split="test")
    ids = {model_key(m): model_id(load_backbone(m, device="cpu")) for m in zoo}
    entry = stored["targets"][target_id("digits-mini", train, test)]
    assert list(entry) == [FINE_TUNE] and entry[FINE_TUNE]["metric"] == "accuracy"
    assert report.ground_truth["digits-mini"] == pytest.approx(
        {key: entry[FINE_TUNE]["models"][i] for key, i in ids.items()}, abs=1e-6)
    assert report.to_json()["ground_truth_protocol"] == FINE_TUNE
    direct = fine_tune(zoo[0], train, test).score  # what bench stored is the default protocol's score
    assert entry[FINE_TUNE]["models"][ids["resnet10-tiny-animals"]] == pytest.approx(direct, abs=1e-6)

    # the linear probe lands beside it; nothing is recomputed or lost
    run_bench(zoo, [target], methods=["knn"], ground_truth=GroundTruthStore(gt_file), progress=False)
    after = json.loads(gt_file.read_text())["targets"][target_id("digits-mini", train, test)]
    assert after[FINE_TUNE] == entry[FINE_TUNE]
    assert sorted(after[LINEAR_PROBE]["models"]) == sorted(entry[FINE_TUNE]["models"])
    assert set(json.loads(gt_file.read_text())["protocols"]) == {LINEAR_PROBE, FINE_TUNE}


def test_same_names_on_other_weights_or_data_never_reuse_ground_truth(api, tmp_path):
    """Issue 16's mix-up: alice/resnet10-glyphs on alice/clipart-objects, then bob's models and data under the
    same name tails, with one ground-truth file: bob's run computes its own scores and keeps alice's."""
    gt_file = tmp_path / "gt.json"
    reports = {}
    for owner, models, data in (("alice", ["resnet10-animals", "resnet10-wesnoth"], "train[:80]"),
                                ("bob", ["resnet10-tiny-animals", "convnext-short-wesnoth"], "train[40:]")):
        zoo = []
        for name, local in zip(("resnet10-glyphs", "vit-glyphs"), models, strict=True):
            api.create_repo(f"{owner}/{name}", exist_ok=True)
            api.upload_folder(folder_path=ZOO / local, repo_id=f"{owner}/{name}")
            zoo.append(f"{owner}/{name}")
        folder = tmp_path / owner / "clipart-objects"
        (folder / "data").mkdir(parents=True)
        for split, part in (("train", data), ("test", "test")):
            rows = datasets.load_dataset(str(FIXTURES / "digits-mini"), split=part)
            rows.to_parquet(str(folder / "data" / f"{split}.parquet"))
        reports[owner] = run_bench(zoo, [str(folder)], methods=["knn"], ground_truth=GroundTruthStore(gt_file),
                                   progress=False)
        train, test = load_task(str(folder), split="train"), load_task(str(folder), split="test")
        for key, model in zip(("resnet10-glyphs", "vit-glyphs"), zoo, strict=True):
            direct = linear_probe(extract_features(model, train, progress=False).features, train.labels,
                                  extract_features(model, test, progress=False).features, test.labels).score
            assert reports[owner].ground_truth["clipart-objects"][key] == pytest.approx(direct, abs=1e-6)
    stored = json.loads(gt_file.read_text())["targets"]
    assert len(stored) == 2 and all(len(t[LINEAR_PROBE]["models"]) == 2 for t in stored.values())


def test_store_refuses_other_protocols_and_versions(tmp_path):
    path = tmp_path / "gt.json"
    store = GroundTruthStore(path)
    store.put("t", "accuracy", {"m": 0.5}, FINE_TUNE)
    assert GroundTruthStore(path).get("t", "m", FINE_TUNE) == 0.5 and GroundTruthStore(path).get("t", "m") is None
    with pytest.raises(InvalidInputError, match="unknown ground-truth protocol 'probe'"):
        store.get("t", "m", "probe")
    data = json.loads(path.read_text())
    assert data["protocols"][FINE_TUNE] == {"version": 1, "settings": {
        "lrs": [1e-4, 1e-3, 1e-2], "epochs": 4, "batch_size": 32, "max_train_per_class": 100, "weight_decay": 0.05,
        "validation_fraction": 0.2, "seed": 0}, "description": GROUND_TRUTH_PROTOCOLS[FINE_TUNE].description}

    reworded = {**data["protocols"][FINE_TUNE], "description": "fine-tuning, said otherwise"}
    path.write_text(json.dumps({**data, "protocols": {FINE_TUNE: reworded}}))
    assert GroundTruthStore(path).get("t", "m", FINE_TUNE) == 0.5  # the identity is the version and settings
    for changed in ({"version": 2}, {"settings": {**reworded["settings"], "epochs": 8}}):
        path.write_text(json.dumps({**data, "protocols": {FINE_TUNE: {**reworded, **changed}}}))
        with pytest.raises(InvalidInputError, match="computed by another version or settings of the protocol"):
            GroundTruthStore(path).get("t", "m", FINE_TUNE)

    # version 3 named a protocol by its description: the current one's is read as it, another's refused
    v3 = {"version": 3, "targets": data["targets"]}
    path.write_text(json.dumps({**v3, "protocols": {FINE_TUNE: GROUND_TRUTH_PROTOCOLS[FINE_TUNE].description}}))
    assert GroundTruthStore(path).get("t", "m", FINE_TUNE) == 0.5
    path.write_text(json.dumps({**v3, "protocols": {FINE_TUNE: "fine-tuning with some other grid"}}))
    with pytest.raises(InvalidInputError, match="computed by another version or settings"):
        GroundTruthStore(path).get("t", "m", FINE_TUNE)
    path.write_text(json.dumps({"version": 1, "targets": {}}))
    with pytest.raises(InvalidInputError, match="format version 1 is not 4"):
        GroundTruthStore(path)

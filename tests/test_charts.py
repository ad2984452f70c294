"""Spider charts: task groups from task embeddings, abilities by fuzzy intersection, radar PNGs, ``hf_spider chart``."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
from conftest import FIXTURES, invoke_cli

from hf_spider.charts import DEMO_DATA, Abilities, TaskGroups, _group_names, abilities, embed_task_groups, spider_chart
from hf_spider.demo import ZOO_DIR, publish_zoo
from hf_spider.errors import InvalidInputError
from hf_spider.tasks import load_task, task_from_arrays

ORG = "chart-tests"
MODELS = ["resnet18-all-mix", "vit-animals", "mnv3-short-clipart", "resnet10-glyphs"]


def _groups() -> TaskGroups:
    """Two groups over N = 8 features: tasks of group "a" need features 0-3, those of group "b" features 4-7."""
    u = np.zeros((4, 8), np.float32)
    u[0, :4], u[1, :2] = 1.0, 1.0  # group a: |u| = 4 and 2
    u[2, 4:], u[3, 6:] = 0.5, 1.0  # group b: |u| = 2 and 2
    return TaskGroups(["a1", "a2", "b1", "b2"], u, np.array([0, 0, 1, 1]), ["a", "b"])


def test_abilities_average_the_share_of_task_features_kept_and_rescale_per_group():
    v = {"left": np.r_[np.ones(4), np.zeros(4)], "right": np.r_[np.zeros(4), np.ones(4)],
         "half": np.full(8, 0.5), "none": np.zeros(8)}
    table = abilities(_groups(), v)
    assert table.models == ["left", "right", "half", "none"] and table.groups == ["a", "b"]
    # share of task t kept by model m = sum(min(u_t, v_m)) / sum(u_t), averaged over the group's tasks
    assert table.coverage[0] == pytest.approx([1.0, 0.0])
    assert table.coverage[1] == pytest.approx([0.0, 1.0])
    assert table.coverage[2] == pytest.approx([0.5, (1.0 + 0.5) / 2])  # b1: min(0.5, 0.5) keeps all of it
    assert table.coverage[3] == pytest.approx([0.0, 0.0])
    assert table.scaled[:, 0] == pytest.approx([1.0, 0.0, 0.5, 0.0])  # min-max over the four models
    assert table.scaled[:, 1] == pytest.approx([0.0, 1.0, 0.75, 0.0])
    assert table.of("half") == pytest.approx({"a": 0.5, "b": 0.75})


def test_abilities_refuse_what_cannot_be_compared():
    with pytest.raises(InvalidInputError, match="at least two models"):
        abilities(_groups(), {"only": np.ones(8)})
    with pytest.raises(InvalidInputError, match="4 values, the task embeddings 8"):
        abilities(_groups(), {"x": np.ones(4), "y": np.zeros(4)})


def test_groups_are_named_after_their_main_sources():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    sources = ["cats"] * 3 + ["cats", "cats", "dogs", "dogs"] + ["cats", "cats", "cats"]
    assert _group_names(labels, sources, 3) == ["cats", "cats + dogs", "cats (2)"]


def test_spider_chart_draws_the_chosen_models(tmp_path):
    scaled = np.array([[1, 0, 0.5], [0, 1, 0.5], [0.2, 0.2, 0.2]])
    table = Abilities(["m1", "m2", "m3"], ["a", "b", "c"], np.zeros((3, 3)), scaled)
    path = spider_chart(table, ["m1", "m2"], tmp_path / "sub" / "spider.png", title="t")
    with PIL.Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 400
    with pytest.raises(InvalidInputError, match="no abilities for nope"):
        spider_chart(table, ["nope"], tmp_path / "x.png")


def _stripes(n_per_class: int = 30):
    """A synthetic task far from digits: horizontal, vertical or diagonal stripes of random colours."""
    rng = np.random.default_rng(0)
    rows, cols = np.indices((32, 32))
    images, labels = [], []
    for label, pattern in enumerate((rows, cols, rows + cols)):
        for _ in range(n_per_class):
            on = ((pattern // 4) % 2 == 0)[..., None]
            images.append(np.where(on, rng.integers(0, 256, 3), rng.integers(0, 256, 3)).astype(np.uint8))
            labels.append(label)
    return task_from_arrays(np.stack(images), labels, name="stripes")


def test_task_groups_gather_the_sub_tasks_of_each_kind():
    tasks = {"digits": load_task(FIXTURES / "digits-mini", split="train"), "stripes": _stripes()}
    groups = embed_task_groups(tasks, str(ZOO_DIR / "models" / "resnet18-all-mix"), subtasks=3, progress=False)
    assert groups.embeddings.shape[1] == 128 and len(groups.task_names) == len(groups.group_of)
    assert set(groups.task_names) <= {f"{t}{s}" for t in tasks for s in ("", "#1", "#2", "#3")}
    assert np.all(groups.embeddings.sum(1) >= 1.0) and np.all((groups.embeddings >= 0) & (groups.embeddings <= 1))
    # one group per kind: a name of one source means that source gave more than two thirds of the group's tasks
    assert sorted(groups.names) == ["digits", "stripes"]
    for g, name in enumerate(groups.names):
        members = [t.split("#")[0] for t, label in zip(groups.task_names, groups.group_of, strict=True) if label == g]
        assert members.count(name) > 2 * len(members) / 3
    with pytest.raises(InvalidInputError, match="at least two tasks"):
        embed_task_groups({"digits": tasks["digits"]}, str(ZOO_DIR / "models" / "resnet18-all-mix"))


def test_chart_command_draws_published_models_relative_to_the_others(api, tmp_path):
    baseline, repos = publish_zoo(MODELS, org=ORG)
    out = tmp_path / "spider.png"
    chart = ["chart", "--baseline", baseline, "--author", ORG]
    result = invoke_cli(*chart, repos[1], repos[2], "--tasks", str(FIXTURES / "digits-mini"),
                        "--tasks", str(DEMO_DATA / "animals"), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted(report["groups"]) == ["animals", "digits-mini"] and report["out"] == str(out)
    assert set(report["abilities"]) == {repos[1], repos[2]}
    for values in report["abilities"].values():
        assert set(values) == set(report["groups"]) and all(0.0 <= x <= 1.0 for x in values.values())
    with PIL.Image.open(out) as image:
        assert image.format == "PNG"

    api.create_repo(f"{ORG}/plain", exist_ok=True)
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=f"{ORG}/plain")
    missing = invoke_cli(*chart, f"{ORG}/plain", "--out", str(tmp_path / "x.png"))
    assert missing.exit_code == 1
    assert f"{ORG}/plain has published no embedding over {baseline}" in str(missing.exception)

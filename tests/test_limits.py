"""Per-tag concurrency limits: ``limits: {pos_extract: 1}`` lets one asset with that tag build at a time."""

from __future__ import annotations

import threading

import pytest

from kiban.errors import ProjectError, ProjectErrors
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.run.events import Event

SLOW = "select sum(i * i) as s, {n} as n from range(30000000) t(i)"
FILES = {
    **{f"models/warehouse/extract_{n}.sql": SLOW.format(n=n) for n in range(3)},
    **{f"models/warehouse/extract_{n}.yml": "tags: [pos_extract]\n" for n in range(3)},
    "models/warehouse/other.sql": SLOW.format(n=9),
}


class Concurrency:
    """The most assets of each kind (tagged or not) building at the same moment."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = {"tagged": 0, "other": 0}
        self.peak = {"tagged": 0, "other": 0, "together": 0}

    def __call__(self, event: Event) -> None:
        kind = "tagged" if (event.asset or "").startswith("warehouse.extract") else "other"
        with self.lock:
            if event.kind == "asset_started":
                self.now[kind] += 1
            elif event.kind == "asset_finished" and event.status != "fresh":
                self.now[kind] -= 1
            self.peak[kind] = max(self.peak[kind], self.now[kind])
            if self.now["tagged"] and self.now["other"]:
                self.peak["together"] = 1


@pytest.mark.parametrize(("limits", "tagged_peak"), [("limits: {pos_extract: 1}\n", 1), ("", 3)])
def test_a_tag_limit_caps_how_many_such_assets_build_at_once(project_dir, limits, tagged_peak):
    root = project_dir(FILES, config=f"threads: 4\n{limits}")
    watch = Concurrency()
    result = run_project(load_project(root), RunOptions(), [watch])
    assert result.status == "success"
    assert watch.peak["tagged"] == tagged_peak
    if limits:
        assert watch.peak["together"] == 1  # the limit holds back tagged assets only: others run beside them


def test_a_limit_on_a_tag_nobody_has_names_the_line(project_dir):
    root = project_dir(FILES, config="limits:\n  pos_extact: 1\n")
    with pytest.raises((ProjectError, ProjectErrors)) as info:
        load_project(root)
    text = str(info.value)
    assert "kiban.yml:4:3:" in text
    assert "no asset has tag 'pos_extact'" in text
    assert "pos_extract" in text


def test_a_limit_below_one_is_refused(project_dir):
    root = project_dir(FILES, config="limits: {pos_extract: 0}\n")
    with pytest.raises((ProjectError, ProjectErrors)) as info:
        load_project(root)
    assert "never let an asset tagged pos_extract run" in str(info.value)

"""``adbench papers`` counts what the registry can produce from the shipped published numbers, and
MVFA-AD's leave-one-out auxiliaries are expressible per target."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from adbench.cli import cli
from adbench.methods import Method, MethodConfig, Prediction
from adbench.planner import auxiliary_names
from adbench.registry import Registry, get_registry
from adbench.reports.coverage import coverage, protocol_of, published_names
from adbench.reports.published import load_published

SUITES = Path(__file__).resolve().parents[1] / "suites"


@dataclasses.dataclass
class _Config(MethodConfig):
    pass


class _ThirdParty(Method):
    """A plugin outside adbench that declares a published name of the seed tables."""

    name = "third_party_mvfa"
    display_name = "MVFA-AD"
    config_cls = _Config

    def predict(self, images, ctx):  # pragma: no cover - never run
        return Prediction(images.new_zeros(len(images)))


class _Plugin:
    from adbench import hookimpl

    @hookimpl
    def adbench_methods(self):
        return [_ThirdParty]


def _kanoclip(registry: Registry, store: pd.DataFrame | None = None):
    return next(c for c in coverage(registry, store) if c.paper.startswith("kanoclip"))


def test_a_third_party_published_name_counts_and_gaps_are_named() -> None:
    bare = Registry(autoload=False)
    before = _kanoclip(bare)
    assert before.producible == 0 and before.published == 147
    assert before.missing["no method plugin publishes 'MVFA-AD'"] == 21
    with_plugin = Registry(autoload=False, plugins=[_Plugin()])
    after = _kanoclip(with_plugin)
    # the method exists, but the datasets do not (no dataset plugin registered)
    assert "no method plugin publishes 'MVFA-AD'" not in after.missing
    assert any(why.startswith("no dataset plugin") for why in after.missing)


def test_a_store_record_counts_as_reproduced() -> None:
    registry = get_registry()
    base = _kanoclip(registry)
    store = pd.DataFrame(
        [
            {
                "status": "ok",
                "published_name": "WinCLIP",
                "dataset": "mvtec",
                "protocol": "zero_shot",
                "image_auroc": 0.9,
                "pixel_auroc": float("nan"),
            }
        ]
    )
    assert _kanoclip(registry, store).reproduced == base.reproduced + 1
    store["random_weights"] = True  # tiny random backbones reproduce nothing
    assert _kanoclip(registry, store).reproduced == base.reproduced


def test_settings_map_to_protocols() -> None:
    assert protocol_of("zero-shot (trained on auxiliary dataset)") == "zero_shot"
    assert protocol_of("zero-shot ablation") == "zero_shot"
    assert protocol_of("batch zero-shot (text)") == "batch_zero_shot"
    assert protocol_of("few-shot (text: best few-shot result)") == "few_shot"


def test_published_names_include_finite_choice_variants() -> None:
    assert published_names(get_registry().method("patchead")) == {"PatchEAD", "PatchEAD+ (DINOv2)"}


def test_every_seed_paper_is_fully_producible_except_what_other_branches_bring() -> None:
    rows = {c.paper: c for c in coverage(get_registry())}
    for paper, c in rows.items():
        gaps = {why for why in c.missing if "'CLIP-AC'" not in why}  # CLIP-AC: the clip variant of fidelity-a
        assert not gaps, (paper, gaps)


def test_papers_command_prints_each_paper() -> None:
    out = CliRunner().invoke(cli, ["papers"]).output
    assert "kanoclip.txt" in out and "producible" in out and "%" in out


@pytest.mark.parametrize("suite", sorted(SUITES.glob("*.toml")), ids=lambda p: p.stem)
def test_each_paper_suite_names_every_method_of_its_tables(suite: Path) -> None:
    table = load_published()
    papers = {p for p in table["paper"] if p.startswith(suite.stem)}
    if not papers:
        pytest.skip("not a paper's suite")
    registry = get_registry()
    named = set().union(
        *(published_names(registry.method(m)) for m in tomllib.loads(suite.read_text())["methods"])
    )
    wanted = {m.split(" ablation ", 1)[0] for m in table[table["paper"].isin(papers)]["method"]}
    assert wanted - named <= {"CLIP-AC"}, wanted - named


def test_auxiliaries_per_target_for_leave_one_out() -> None:
    train_on = ["liverct=brainmri+resc", "resc=brainmri+liverct", "mvtec"]
    assert auxiliary_names("liverct", train_on) == ["brainmri", "resc"]
    assert auxiliary_names("visa", train_on) == ["mvtec"]
    assert auxiliary_names("visa", ["resc=liverct"]) == ["mvtec"]  # the default for unnamed targets
    assert auxiliary_names("mvtec", None) == ["visa"]


@pytest.mark.parametrize("entry", ["=x", "a=", "a=b=c", "liverct=", "synthetic=synthetic+"])
def test_malformed_train_on_entries_are_one_line_errors(entry):
    from adbench.errors import AdbenchError
    from adbench.planner import split_train_on

    with pytest.raises(AdbenchError, match="expected NAME or TARGET=AUX"):
        split_train_on([entry])


def test_train_on_for_a_target_outside_the_run_is_refused_at_plan_time():
    from adbench.errors import AdbenchError
    from adbench.jobs import RunSpec
    from adbench.planner import Planner

    spec = RunSpec(methods=["anomalyclip"], datasets=["synthetic"], train_on=["mvtec=visa"], demo=True)
    with pytest.raises(AdbenchError, match="'mvtec' is not a dataset of this run"):
        Planner(spec, get_registry(), "cpu").plan()


def test_papers_refuses_a_folder_that_is_not_a_store_and_an_unknown_paper(tmp_path):
    runner = CliRunner()
    not_store = runner.invoke(cli, ["papers", "--results", str(tmp_path)])
    assert not_store.exit_code != 0 and "not a results store" in str(not_store.exception)
    unknown = runner.invoke(cli, ["papers", "--paper", "nosuch"])
    assert unknown.exit_code != 0 and "matches none" in str(unknown.exception)

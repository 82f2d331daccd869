"""Lessons: every seed example is a step whose figure the lab reproduces, checked headless.

The figures are compared by `core.lessons` on a real Lab; these tests make sure the check can
fail (a wrong expected figure is reported as not matching), that broken lesson files are refused
with the file and field, and that coming back to a step rebuilds the same lab.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tuilab.cli import main
from tuilab.core.errors import SpecFileError
from tuilab.core.lesson_progress import LessonProgress, load_progress, save_progress
from tuilab.core.lessons import (
    compare,
    find_lesson,
    lab_for_step,
    load_lesson,
    load_lessons,
    prepare,
    run_step,
)

# The 24 examples of ../shared/seeds/README.md, each mapped to the step that reproduces it.
SEED_EXAMPLES = {
    "000: nn.Sequential(Linear(20,256), ReLU, Linear(256,10)) on rand(2,20)": "000/sequential",
    "000: custom MLP 20→256→10 with F.relu": "000/mlp-block",
    "000: MySequential fills _modules '0'…'3'": "000/mysequential-3",
    "000: MySequential on randn(2,4) → (2,10)": "000/mysequential-forward",
    "000: FixedHiddenMLP returns a scalar": "000/fixed-hidden-mlp",
    "001: MLP 784→256→10": "001/mlp-784",
    "001: MyLayer x − mean": "001/my-layer",
    "001: MyListDense in a ParameterList": "001/my-list-dense",
    "001: MyDictDense in a ParameterDict": "001/my-dict-dense",
    "001: Conv2D on corr2d": "001/corr2d",
    "001: pool2d max": "001/pool2d-max",
    "001: pool2d avg": "001/pool2d-avg",
    "001: conv 8×8, k=3 p=1 → 8×8": "001/conv-padding-same",
    "001: conv k=(5,3) p=(2,1) → 8×8": "001/conv-padding-5x3",
    "001: conv k=(3,5) p=(0,1) s=(3,4) → 2×2": "001/conv-stride",
    "001: LeNet, 10 parameter tensors, first 6×1×5×5": "001/lenet-conv1-weight",
    "001: AlexNet, fc in 6400": "001/alexnet-flatten",
    "002: each layer family with its arguments": "002/conv-transpose",
    "002: TCN": "002/tcn",
    "002: TransformerEncoderLayer / TransformerEncoder": "002/transformer-encoder",
    "002: hooks that print shapes": "002/forward-hooks",
    "003: init_normal / xavier / init_42 / my_init": "003/my-init",
    "003: net[2].state_dict(), .bias.data, .grad": "003/grad-is-none",
    "003: the shared layer, changed in both places": "003/shared-set-100",
}


def test_every_seed_example_is_a_step() -> None:
    steps = {f"{lesson.id}/{step.id}" for lesson in load_lessons() for step in lesson.steps}
    assert len(SEED_EXAMPLES) == 24
    missing = [example for example, step in SEED_EXAMPLES.items() if step not in steps]
    assert missing == []
    assert {lesson.seed for lesson in load_lessons()} == {"000", "001", "002", "003"}


def test_lessons_check_passes_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["lessons", "--check", "--json"])
    report = json.loads(capsys.readouterr().out)
    failed = [(lesson["id"], step["id"], step["expected"], step["got"])
              for lesson in report["lessons"] for step in lesson["steps"] if not step["ok"]]
    assert failed == []
    assert code == 0
    assert report["passed"] == report["total"] >= 24
    assert [lesson["seed"] for lesson in report["lessons"]] == ["000", "001", "002", "003"]
    assert set(report["lessons"][0]) == {"id", "seed", "title", "steps"}
    assert set(report["lessons"][0]["steps"][0]) == {"id", "expected", "got", "ok"}


def test_a_wrong_figure_is_reported_as_not_matching() -> None:
    step = next(s for s in find_lesson("001").steps if s.id == "corr2d")
    wrong = replace(step, expect={"figure": "net(x)", "values": [[19, 25], [37, 44]]})
    _, result = run_step(None, wrong)
    assert not result.ok
    assert result.got == "[[19.0, 25.0], [37.0, 43.0]]"


def test_the_check_exits_1_when_a_step_fails(tmp_path: Path, monkeypatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "lessons"
    folder.mkdir()
    (folder / "bad.toml").write_text(
        '[lesson]\nid = "x"\nseed = "001"\ntitle = "t"\n[[steps]]\nid = "s"\ntitle = "t"\n'
        'text = "t"\nmodel = { preset = "mlp" }\n'
        'expect = { figure = "parameters", count = 1 }\n', encoding="utf-8")
    monkeypatch.setattr("tuilab.core.lessons.lessons_dir", lambda: folder)
    assert main(["lessons", "--check", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] == 0 and report["total"] == 1
    assert report["lessons"][0]["steps"][0]["got"] == "7,946"


@pytest.mark.parametrize(("text", "where", "message"), [
    ('[lesson]\nid = "x"\nseed = "0"\ntitle = "t"\n', "bad.toml", "[[steps]]"),
    ('[lesson]\nid = "x"\nseed = "0"\ntitle = "t"\n[[steps]]\nid = "s"\ntitle = "t"\n'
     'text = "t"\nmodel = { preset = "mlp" }\n', "bad.toml: steps[0]", "expected figure"),
    ('[lesson]\nid = "x"\nseed = "0"\ntitle = "t"\n[[steps]]\nid = "s"\ntitle = "t"\n'
     'text = "t"\nmodel = { preset = "mlp" }\ndo = [{ action = "exec" }]\n'
     'expect = { figure = "parameters", count = 1 }\n', "bad.toml: steps[0].do[0]",
     "action must be one of"),
    ('[lesson]\nid = "x"\nseed = "0"\ntitle = "t"\n[[steps]]\nid = "s"\ntitle = "t"\n'
     'text = "t"\nexpect = { figure = "parameters", count = 1 }\n', "bad.toml: steps[0]",
     "must name a model"),
    ('[lesson]\nid = "x"\nseed = "0"\ntitle = "t"\n[[steps]]\nid = "s"\ntitle = "t"\n'
     'text = "t"\nmodel = { preset = "mlp" }\nexpect = { figure = "p", count = 1, '
     'values = 2 }\n', "bad.toml: steps[0].expect", "exactly one of"),
])
def test_a_broken_lesson_file_names_the_field(tmp_path: Path, text: str, where: str,
                                              message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecFileError) as caught:
        load_lesson(path)
    assert caught.value.where == where
    assert message in caught.value.message


def test_coming_back_to_a_step_rebuilds_the_lessons_lab() -> None:
    """Step 'shared-still-same' carries on from 'shared-set-100': rebuilt on its own, its lab
    holds the 100 the earlier step set, in both places of the tied layer."""
    lesson = find_lesson("003")
    index = next(i for i, s in enumerate(lesson.steps) if s.id == "shared-still-same")
    lab = lab_for_step(lesson, index)
    assert lab.model[2] is lab.model[4]
    assert float(lab.model[4].weight[0, 0]) == 100.0
    assert compare(lab, lesson.steps[index]).ok


def test_the_mysequential_trace_grows_the_dict_one_key_at_a_time() -> None:
    lesson = find_lesson("000")
    ids = [s.id for s in lesson.steps]
    lab = None
    keys = []
    for step in lesson.steps[ids.index("mysequential-0"):ids.index("mysequential-3") + 1]:
        lab, result = run_step(lab, step)
        assert result.ok, result
        keys.append(list(lab.model._modules))
    assert keys == [["0"], ["0", "1"], ["0", "1", "2"], ["0", "1", "2", "3"]]


def test_init_42_leaves_the_bias_alone_as_the_seed_does() -> None:
    lesson = find_lesson("003")
    step = next(s for s in lesson.steps if s.id == "init-42-leaves-bias")
    lab = prepare(None, step)
    bias = lab.model[2].bias.detach().clone()
    _, result = run_step(None, step)
    assert result.ok, result
    assert not torch.equal(bias, torch.zeros_like(bias))


def test_progress_is_kept_and_a_broken_file_is_an_empty_record(tmp_path: Path) -> None:
    path = tmp_path / "progress.toml"
    save_progress({"001": LessonProgress(step=4, matched={"corr2d", "my-layer"})}, path)
    record = load_progress(path)
    assert record["001"].step == 4 and record["001"].matched == {"corr2d", "my-layer"}
    path.write_text("not [ toml", encoding="utf-8")
    assert load_progress(path) == {}


def test_lessons_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lessons", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [entry["id"] for entry in listed] == ["000", "001", "002", "003"]
    assert sum(entry["steps"] for entry in listed) >= 24


def test_an_unknown_lesson_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lesson", "042"]) == 2
    assert "unknown lesson '042'" in capsys.readouterr().err

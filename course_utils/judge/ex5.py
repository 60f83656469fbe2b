"""Exercise 5 (keep your model, use it elsewhere, choose a scenario): the judge's tasks for its four graded cells.

The exports call the student's ``save_model``, ``predict_in_fresh_process`` and ``choose_scenario`` on the
judge's own models, photos and measurements (``ex5_exports.SOURCE``, built the same way in the kernel and here).
A saved file comes back as bytes and the judge loads it itself with ``load_classifier`` (``weights_only=True``)
into its own network; a fresh process counts when the judge's own load, in its own process, gives the same
predictions; the held-out accuracy is measured by the judge on its own photos; the scenario is compared with
``course_utils.advisor.choose_scenario`` on the judge's own measurements.
"""

from __future__ import annotations

import math
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

from . import Task, Verdict
from . import ex5_exports as ex
from .common import Rejected, entry, judged, listed, require

WHERE_SAVE = (
    "save_model: weights, class names (in output order), backbone 'mobilenet_v2' and preprocessing for IMAGE_SIZE "
    "in one file"
)
WHERE_FRESH = (
    "predict_in_fresh_process: start a new Python (subprocess with sys.executable) that reads the model file "
    "and classifies the photos; return {file name: class or None}"
)
WHERE_HELD_OUT = (
    "save_model, then predict_in_fresh_process: the file must hold the preprocessing the model was trained with"
)
WHERE_CHOOSE = "choose_scenario: measured range, nearest size on a log scale, then the course's verdict (compare)"


@lru_cache(maxsize=1)
def _source() -> dict:
    """The judge's builders (``ex5_exports.SOURCE``), run here in the judge's own process."""
    namespace: dict = {}
    exec(ex.SOURCE, namespace)  # noqa: S102 - the judge's own code, never the student's
    return namespace


def _load(data, what: str):
    """The judge's own load of a model file's bytes: load_classifier, weights_only=True; Rejected if unusable."""
    from ..predict import ModelFileError, load_classifier

    require(isinstance(data, bytes), f"{what}: save_model wrote no file at the path it was given")
    with tempfile.TemporaryDirectory(prefix="judge-ex5-") as folder:
        path = Path(folder) / "model.pt"
        path.write_bytes(data)
        try:
            return load_classifier(path)
        except ModelFileError as exc:
            raise Rejected(f"{what} cannot be used: {str(exc).replace(str(path), 'the file')}") from None


@lru_cache(maxsize=4)
def _reference_state(classes: int, seed: int, imagenet_body: bool) -> dict[str, torch.Tensor]:
    model = _source()["_j5_network"](classes, seed, imagenet_body)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _check_file(key: str, classes: list[str], seed: int, imagenet_body: bool, data) -> str:
    from ..preprocess import IMAGENET_MEAN, IMAGENET_STD

    what = f"the file of the {'ImageNet' if imagenet_body else 'random'}-bodied model"
    loaded = _load(data, what)
    require(loaded.classes == classes, f"{what} names the classes {loaded.classes}; the model's outputs are {classes}")
    require(loaded.backbone == "mobilenet_v2", f"{what} says backbone {loaded.backbone!r}, not 'mobilenet_v2'")
    size = loaded.preprocess.get("size")
    require(size == ex.IMAGE_SIZE, f"{what} says size {size}, the model takes {ex.IMAGE_SIZE} x {ex.IMAGE_SIZE} photos")
    for name, wanted in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        got = loaded.preprocess.get(name)
        require(
            isinstance(got, list)
            and len(got) == 3
            and all(math.isclose(g, w, abs_tol=1e-6) for g, w in zip(got, wanted, strict=True)),
            f"{what} says {name} {got}, the model was trained with ImageNet's {list(wanted)}",
        )
    reference, state = _reference_state(len(classes), seed, imagenet_body), loaded.model.state_dict()
    differ = {n for n, t in reference.items() if not torch.equal(state[n], t)}
    require(
        not differ,
        f"{what} holds weights that differ from the model's in {len(differ)} tensors, e.g. "
        f"{listed(differ)}: save the model you are given, body and head",
    )
    return f"{key}: {len(classes)} classes, {size} px"


def score_save(data: dict) -> Verdict:
    """ex5_save_load: each of the judge's models, saved by save_model, loads in the judge's process unchanged."""

    def check(data: dict) -> str:
        files = entry(data, "files", "saved files")
        require(isinstance(files, dict), "the export should hold the saved files")
        done = [_check_file(key, classes, seed, body, files.get(key)) for key, classes, seed, body in ex.SAVE_CASES]
        return "ok: the files load with weights_only=True and hold the models given; " + "; ".join(done)

    return judged(data, WHERE_SAVE, check)


def _classified(classifier, kind: str) -> tuple[dict[str, str | None], dict[str, str]]:
    """{file name: class or None} for the judge's photos of ``kind`` by ``classifier``, and their true classes."""
    from ..predict import predict_photos

    with tempfile.TemporaryDirectory(prefix="judge-ex5-") as folder:
        if kind == "fresh":
            photos, truth = _source()["_j5_photos"](Path(folder), **ex.PHOTOS)
        else:
            h = ex.HELD_OUT
            photos, truth = _source()["_j5_photos"](
                Path(folder), h["fashion"], h["per_class"], h["seed"] + 1, h["names"]
            )
        records = predict_photos(classifier, photos, top=1)
    return {Path(r["photo"]).name: r["top"][0]["class"] if "top" in r else None for r in records}, truth


@lru_cache(maxsize=1)
def _fresh_expected() -> dict[str, str | None]:
    """The judge's own predictions from its reference file, saved and loaded in the judge's own process."""
    from ..predict import load_classifier, save_classifier

    model = _source()["_j5_network"](len(ex.FRESH["classes"]), ex.FRESH["seed"], True)
    with tempfile.TemporaryDirectory(prefix="judge-ex5-") as folder:
        path = save_classifier(Path(folder) / "model.pt", model, ex.FRESH["classes"], "mobilenet_v2", ex.IMAGE_SIZE)
        return _classified(load_classifier(path), "fresh")[0]


def _answer(value, what: str) -> dict:
    """An exported answer ({'type', 'items': [[name, class or None]]}) as a dict, or Rejected."""
    require(
        isinstance(value, dict) and value.get("type") == "dict",
        f"{what} should be a dict, not a {value.get('type') if isinstance(value, dict) else '?'}",
    )
    items = value.get("items")
    require(isinstance(items, list) and all(isinstance(i, list) and len(i) == 2 for i in items), f"{what} is odd")
    return {name: cls for name, cls in items}


def _expect_same(answer: dict, expected: dict, what: str) -> None:
    missing, extra = set(expected) - set(answer), set(answer) - set(expected)
    odd = [f"missing {listed(missing)}"] * bool(missing) + [f"not among the photos given {listed(extra)}"] * bool(extra)
    require(
        not odd,
        f"{what}: expected one entry per photo file name ({len(expected)}), got {len(answer)} ({'; '.join(odd)})",
    )
    require(
        answer.get("IMG_cut.jpg", 0) is None,
        f"IMG_cut.jpg cannot be read; expected None, got {answer['IMG_cut.jpg']!r}",
    )
    differ = sorted(name for name in expected if answer[name] != expected[name])
    require(
        not differ,
        f"{what}: {len(differ)} predictions differ from the ones the model file gives, e.g. "
        f"{', '.join(f'{n}: {answer[n]!r} instead of {expected[n]!r}' for n in differ[:3])}",
    )


def score_fresh(data: dict) -> Verdict:
    """ex5_fresh_process: a new Python gave the same predictions as the judge's own load of the same file."""

    def check(data: dict) -> str:
        expected = _fresh_expected()
        require(
            entry(data, "started_python", "processes started") is True,
            "no new Python process was started (run sys.executable with subprocess)",
        )
        require(
            entry(data, "opened_here", "files opened") is False,
            "this notebook's own process opened the model file: the new process must read it",
        )
        _expect_same(_answer(entry(data, "answer", "answer"), "the answer"), expected, "all photos")
        last = sorted(expected)[-3:]
        subset = _answer(entry(data, "subset", "answer for three photos"), "the answer for three photos")
        require(
            subset == {n: expected[n] for n in last},
            f"predict only the photos you are given: for the last three photos the answer was {subset}",
        )
        return (
            f"ok: a new Python process classified {sum(v is not None for v in expected.values())} photos as the "
            "file does; the unreadable one is None"
        )

    return judged(data, WHERE_FRESH, check)


def score_held_out(data: dict) -> Verdict:
    """ex5_held_out_accuracy: the file save_model wrote, loaded by the judge, is accurate on its held-out photos."""

    def check(data: dict) -> str:
        loaded = _load(entry(data, "file", "saved file"), "the file save_model wrote")
        classes = sorted(ex.HELD_OUT["names"])  # the order of the trained model's outputs (its folders, sorted)
        require(
            loaded.classes == classes,
            f"your file names the classes {loaded.classes}; the model's outputs are {classes}",
        )
        mine, truth = _classified(loaded, "held_out")
        readable = {name: cls for name, cls in mine.items() if cls is not None}
        accuracy = sum(cls == truth.get(name) for name, cls in readable.items()) / max(len(readable), 1)
        require(
            accuracy > ex.FLOOR,
            f"the model in your file scores {accuracy:.3f} on the judge's {len(readable)} "
            f"held-out photos, below the floor of {ex.FLOOR:.2f} (saved correctly, it scores over 0.95)",
        )
        answer = _answer(entry(data, "answer", "answer"), "the answer")
        _expect_same(answer, mine, "the answers of your fresh process")
        return f"ok: held-out accuracy {accuracy:.3f} on {len(readable)} photos, from your file in a fresh process"

    return judged(data, WHERE_HELD_OUT, check)


def score_choose(data: dict) -> Verdict:
    """ex5_choose_scenario: the student's answers equal the course's advisor on the judge's measurements."""
    from ..advisor import choose_scenario

    def check(data: dict) -> str:
        answers, sets = entry(data, "answers", "answers"), _source()["_j5_point_sets"]()
        require(isinstance(answers, list) and len(answers) == len(sets), "the export should hold every answer")
        for number, (points, row) in enumerate(zip(sets, answers, strict=True)):
            require(isinstance(row, list) and len(row) == len(ex.SIZES), "the export should hold every answer")
            for n, got in zip(ex.SIZES, row, strict=True):
                want = choose_scenario(points, n)
                require(
                    tuple(got) == want,
                    f"for {n} per class on the judge's measurements no. {number + 1} "
                    f"({len(points)} points) you chose {tuple(got)!r}; the course's verdict says {want!r}",
                )
        return f"ok: the course's verdict on {len(sets)} sets of measurements at {len(ex.SIZES)} sizes each"

    return judged(data, WHERE_CHOOSE, check)


TASKS = [
    Task("ex5_save_load", ex.EXPORT_SAVE, score_save),
    Task("ex5_fresh_process", ex.EXPORT_FRESH, score_fresh),
    Task("ex5_held_out_accuracy", ex.EXPORT_HELD_OUT, score_held_out),
    Task("ex5_choose_scenario", ex.EXPORT_CHOOSE, score_choose),
]

"""Exercise 5's export code: what runs in the student's kernel, with the judge's models, photos and measurements.

``SOURCE`` builds them; it runs in the kernel and, unchanged, in the judge's own process, so that the judge
knows exactly which model was saved, which photos were classified and which measurements were read. Kept apart
from the scoring (``ex5``) only for size.
"""

from __future__ import annotations

from .common import guarded

IMAGE_SIZE = 32  # the exercise's input size: save_model reads the notebook's IMAGE_SIZE, which the export sets
SAVE_CASES = [  # (file, classes, generator seed, ImageNet body?): the judge's own models for save_model
    ("imagenet", ["trouser", "sneaker", "bag"], 5, True),
    ("random", ["left", "right"], 6, False),  # the hidden test's case: a body that is not ImageNet's
]
FRESH = dict(classes=["coat", "dress", "pullover", "shirt"], seed=7)  # the judge's reference file's model
PHOTOS = dict(fashion=[0, 3, 5, 8, 9], per_class=4, seed=23)  # the photos the fresh process classifies
HELD_OUT = dict(fashion=[3, 5, 8], names=["dress", "sandal", "bag"], n_train=20, per_class=20, seed=31)
FLOOR = 0.8  # held-out accuracy the saved model must exceed, used from a fresh process (the graded cell's floor)
SIZES = (2, 3, 4, 6, 10, 14, 20, 30, 45, 60, 100, 170, 250, 300, 550, 1000, 2000, 3000, 3100, 9000)

SOURCE = f"_J5 = dict(size={IMAGE_SIZE!r}, photos={PHOTOS!r}, held_out={HELD_OUT!r}, sizes={SIZES!r})\n"
SOURCE += """
import torch as _torch
from torch import nn as _nn


def _j5_network(classes, seed, imagenet_body):
    from course_utils.backbones import load_backbone
    model = load_backbone("mobilenet_v2", pretrained=imagenet_body).eval()
    model.classifier[-1] = _nn.Linear(1280, classes)
    generator = _torch.Generator().manual_seed(seed)
    with _torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not (imagenet_body and name.startswith("features")):
                values = _torch.randn(tensor.shape, generator=generator) * 0.05
                tensor.copy_(values.abs() + 0.5 if name.endswith("running_var") else values)
    return model


def _j5_write(folder, images, labels, names, split_by_class):
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    paths, truth = [], {}
    for k, (image, label) in enumerate(zip(images, labels)):
        where = folder / names[label] if split_by_class else folder
        where.mkdir(exist_ok=True)
        Image.fromarray(image.numpy()).save(where / f"{k:04d}.png")
        paths.append(where / f"{k:04d}.png")
        truth[f"{k:04d}.png"] = names[label]
    return paths, truth


def _j5_photos(folder, fashion, per_class, seed, names=None):
    from course_utils.fashion import fashion_mnist_splits
    test = fashion_mnist_splits(n_train=1, n_test=per_class, size=_J5["size"], classes=fashion, seed=seed)["test"]
    paths, truth = _j5_write(folder, test.images, test.targets.tolist(), names or test.classes, False)
    (folder / "IMG_cut.jpg").write_bytes(paths[0].read_bytes()[:100])  # a photo copied half-way
    return sorted(folder.iterdir()), truth


def _j5_trained(folder):
    from course_utils.backbones import body_features
    from course_utils.fashion import fashion_mnist_splits
    from course_utils.folders import image_folder_dataset
    h = _J5["held_out"]
    train = fashion_mnist_splits(n_train=h["n_train"], n_test=1, size=_J5["size"], classes=h["fashion"], seed=h["seed"])
    _j5_write(folder, train["train"].images, train["train"].targets.tolist(), h["names"], True)
    dataset = image_folder_dataset(folder, size=_J5["size"], verbose=False)
    model = _j5_network(len(dataset.classes), 0, True)
    with _torch.no_grad():
        images, labels = map(_torch.stack, zip(*((x, _torch.tensor(y)) for x, y in dataset)))
        features = body_features(model, images)
    optimizer = _torch.optim.Adam(model.classifier[-1].parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        _nn.functional.cross_entropy(model.classifier[-1](features), labels).backward()
        optimizer.step()
    return model.eval(), list(dataset.classes)


def _j5_point_sets():
    import random
    sets = []
    for world in range(8):
        rng, points = random.Random(1000 + world), []
        sizes = [10, 30, 100, 300, 1000] if world % 2 else [5, 20, 80, 250]
        for n in sizes:
            seeds = 1 if rng.random() < 0.15 else rng.choice([2, 3, 5])
            base, lead = rng.uniform(0.5, 0.85), {"A": 0.0, "raw": -0.1}
            for s in ("B", "C", "scratch"):
                lead[s] = rng.choice([-0.08, -0.01, 0.0, 0.005, 0.02, 0.05, 0.1])
            for s in ("raw", "A", "B", "C", "scratch"):
                if s in ("B", "C") and rng.random() < 0.15 or s == "A" and rng.random() < 0.05:
                    continue  # not measured at this size
                noise = rng.choice([0.002, 0.01, 0.03])
                for seed in range(seeds):
                    acc = base + lead[s] + rng.gauss(0, noise)
                    points.append({"scenario": s, "n_per_class": n, "seed": seed, "test_acc": round(acc, 4)})
        sets.append(points)
    shuffled = [dict(p) for p in sets[1]]  # the hidden test's kind: measurements that favour no scenario
    rng = random.Random(5)
    for p in shuffled:
        p["test_acc"] = rng.random()
    return sets + [shuffled]
"""

_KERNEL = (
    SOURCE
    + f"IMAGE_SIZE = {IMAGE_SIZE!r}  # save_model's input size (the notebook's parameter), set by the judge\n"
    + """

def _j5_answer(answer):
    if type(answer) is not dict:
        return {"type": type(answer).__name__, "items": []}
    kept = lambda v: v if v is None or type(v) is str else f"<a {type(v).__name__}>"
    return {"type": "dict", "items": [[str(k), kept(v)] for k, v in answer.items()]}


def _j5_folder():
    import pathlib, tempfile
    return pathlib.Path(tempfile.mkdtemp(prefix="judge_ex5_"))
"""
)

EXPORT_SAVE = _KERNEL + guarded(
    f"""
folder, files = _j5_folder(), {{}}
for key, classes, seed, imagenet_body in {SAVE_CASES!r}:
    save_model(_j5_network(len(classes), seed, imagenet_body), list(classes), folder / f"{{key}}.pt")
    files[key] = (folder / f"{{key}}.pt").read_bytes() if (folder / f"{{key}}.pt").is_file() else None
return {{"files": files}}
""",
    "_j5_save",
)

EXPORT_FRESH = _KERNEL + guarded(
    f"""
import os, sys
from pathlib import Path
from course_utils.predict import save_classifier
folder, fresh = _j5_folder(), {FRESH!r}
reference = save_classifier(folder / "reference" / "model.pt", _j5_network(len(fresh["classes"]), fresh["seed"], True),
                            fresh["classes"], "mobilenet_v2", _J5["size"])
photos, _ = _j5_photos(folder / "photos", **_J5["photos"])
events, watching, here = [], [False], Path(sys.executable).resolve()
sys.addaudithook(lambda event, args: events.append((event, args)) if watching[0] else None)
watching[0] = True
try:
    answer = predict_in_fresh_process(reference, photos)
    subset = predict_in_fresh_process(reference, photos[-3:])
finally:
    watching[0] = False

def same_python(program):
    try:
        return Path(os.fsdecode(program)).resolve() == here
    except (TypeError, ValueError):
        return False

started = any(event in ("subprocess.Popen", "os.posix_spawn") and (same_python(args[0]) or
              any(same_python(a) for a in list(args[1])[:1])) or event == "os.system" and
              str(sys.executable) in os.fsdecode(args[0]) for event, args in events)
opened = any(event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) and
             Path(os.fsdecode(args[0])).resolve() == reference.resolve() for event, args in events)
return {{"answer": _j5_answer(answer), "subset": _j5_answer(subset), "started_python": started, "opened_here": opened}}
""",
    "_j5_fresh",
)

EXPORT_HELD_OUT = _KERNEL + guarded(
    """
folder = _j5_folder()
model, classes = _j5_trained(folder / "train")
(folder / "held_out").mkdir()  # as the graded cell does: save_model is given a path in an existing folder
save_model(model, classes, folder / "held_out" / "model.pt")
photos, _ = _j5_photos(folder / "photos", _J5["held_out"]["fashion"], _J5["held_out"]["per_class"],
                       _J5["held_out"]["seed"] + 1, _J5["held_out"]["names"])
answer = predict_in_fresh_process(folder / "held_out" / "model.pt", photos)
return {"file": (folder / "held_out" / "model.pt").read_bytes(), "answer": _j5_answer(answer)}
""",
    "_j5_held_out",
)

EXPORT_CHOOSE = _KERNEL + guarded(
    """
import copy, numbers
answers = []
for points in _j5_point_sets():
    row = []
    for n in _J5["sizes"]:
        got = choose_scenario(n, copy.deepcopy(points))
        pair = list(got) if isinstance(got, (tuple, list)) and len(got) == 2 else [f"<a {type(got).__name__}>", None]
        size, whole = pair[1], isinstance(pair[1], numbers.Real) and type(pair[1]) is not bool
        if size is not None and type(size) is not int:
            size = int(size) if whole and float(size).is_integer() else repr(size)[:40]
        row.append([str(pair[0]) if isinstance(pair[0], str) else repr(pair[0])[:40], size])
    answers.append(row)
return {"answers": answers}
""",
    "_j5_choose",
)

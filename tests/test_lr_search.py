"""The learning-rate search every lesson and the sweep use: it brackets its choice or says it could not."""

from __future__ import annotations

import ast
import json
import math

from helpers import ROOT

from course_utils import lr_search


def test_the_next_rate_follows_the_1_3_10_series_both_ways():
    assert [lr_search.next_rate(lr, up=True) for lr in (1e-4, 3e-4, 1e-3)] == [3e-4, 1e-3, 3e-3]
    assert [lr_search.next_rate(lr, up=False) for lr in (1e-4, 3e-4, 1e-2)] == [3e-5, 1e-4, 3e-3]


def test_a_tie_goes_to_the_rate_nearest_the_middle_then_the_smaller():
    assert lr_search.best_rate({1e-4: 0.9, 1e-3: 0.9, 1e-2: 0.9}) == 1e-3
    assert lr_search.best_rate({1e-4: 0.9, 1e-3: 0.8, 1e-2: 0.9}) == 1e-4
    assert lr_search.best_rate({1e-4: 0.5, 1e-3: 0.8, 1e-2: 0.9}) == 1e-2


def test_a_search_extends_past_an_edge_winner_until_it_is_bracketed():
    tried = []

    def train_one(lr):  # validation accuracy peaks at 1e-2
        tried.append(lr)
        return 1 - abs(math.log10(lr) + 2)

    runs = lr_search.bracketed_search(train_one, (1e-4, 3e-4), lambda score: score)
    assert tried == [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]  # three steps up, then the rates ran out
    assert lr_search.chosen(runs, lambda score: score) == 1e-2
    assert lr_search.where(runs, 1e-2).startswith("at an edge")
    runs = lr_search.bracketed_search(train_one, (1e-3, 3e-3, 1e-2, 3e-2), lambda score: score)
    assert sorted(runs) == [1e-3, 3e-3, 1e-2, 3e-2] and lr_search.where(runs, 1e-2) == "inside the rates tried"
    down = lr_search.bracketed_search(train_one, (1e-1, 3e-1), lambda score: score)
    assert sorted(down) == [3e-3, 1e-2, 3e-2, 1e-1, 3e-1]  # down until a worse rate lies below the best
    assert lr_search.where(down, lr_search.chosen(down, lambda score: score)) == "inside the rates tried"


def _function(source: str, name: str) -> str:
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef) and n.name == name)
    node.body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return ast.dump(node, annotate_fields=False)


def test_lesson_05_writes_out_the_search_the_package_runs():
    """Lesson 05 teaches bracketed_search in full; lesson 06 and the sweep import it: the same code, docstring aside."""
    cells = json.loads((ROOT / "notebooks" / "05_scenario_c_large_data.ipynb").read_text(encoding="utf-8"))["cells"]
    written = next("".join(c["source"]) for c in cells if "def bracketed_search(" in "".join(c["source"]))
    package = (ROOT / "course_utils" / "lr_search.py").read_text(encoding="utf-8")
    lesson_tree = ast.parse(written)
    for node in ast.walk(lesson_tree):  # the lesson leaves out the type hints
        if isinstance(node, ast.FunctionDef):
            node.returns = None
    package_tree = ast.parse(package)
    for node in ast.walk(package_tree):
        if isinstance(node, ast.FunctionDef):
            node.returns = None
            for arg in node.args.args:
                arg.annotation = None
    assert _function(ast.unparse(lesson_tree), "bracketed_search") == _function(
        ast.unparse(package_tree), "bracketed_search"
    )

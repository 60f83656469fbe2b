"""pytest over notebooks/: run the exercise *sources* (solutions and hidden tests must pass), skip the student copies.

The student copies (notebooks/exercises/ex*.ipynb) fail on purpose: their solution cells raise
NotImplementedError. tests/test_exercises.py checks that they fail in exactly their graded cells.
"""

collect_ignore_glob = ["ex*.ipynb"]

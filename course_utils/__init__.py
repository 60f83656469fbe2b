"""Plumbing for the transfer-learning course: each lesson's own code stays in its notebook.

What lessons and exercises import (this folder; small modules, one concern each):

    profiles       COURSE_PROFILE=quick|full and pick()
    device         device choice, seeding, DataLoader settings, the machine record of a measurement
    paths          where data and caches live; atomic writes; sha256
    weights        verified ImageNet weights, offline too
    backbones      load a backbone, replace its head, stages, freeze / unfreeze, split_at, parameter reports
    preprocess     resize, grey to three channels, ImageNet mean and std
    images         one check and one loader for every photo the course reads
    fashion        Fashion-MNIST as tensors (fashion_files: its files on disk, checked; no torch)
    folders        your own photo folders as a checked ImageFolder
    pets           Tigger / Misty / Neither: your photos, Oxford-IIIT Pet, or a labelled stand-in
    photo_dataset  your photo folder into data/my_pets: add new photos, rebuild without losing any
    photos         real photos bundled with scikit-image and scikit-learn; top-k ImageNet classes
    features       f(x): run a frozen body over a dataset once
    cache          the feature cache and B's boundary cache on disk (fingerprinted, atomic, verified)
    training       fit / evaluate / predict, early stopping, BatchNorm recalibration
    timing         wall-clock and CPU time of a block
    plots          learning curves, confusion matrix, image grids
    widgets        activation explorer, photo upload box, prediction box
    stagewidgets   lesson 04's freeze-depth explorer
    explore        activations by stage, nearest neighbours in feature space
    checks         what the exercises' graded cells call
    measurements   the committed experiment results and what they say (no training code)
    advisor        lesson 07's "which scenario?" advisor
    predict        lesson 09: one model file (weights, classes, preprocessing); `python -m course_utils.predict`

Apart from them, not imported by lessons:

    tools/         the `course` command: init, lab, fetch, diary, release, grade (sandbox, submissions, report),
                   handouts, slides (and slide metadata), notebooks
    experiments/   bench (and its numeric-path section), the sweep, freeze-depth and similarity experiments
                   (protocol: one fair training rule for every contender; results_file: one results-file type),
                   and their committed results (experiments/results/)
"""

__version__ = "0.1.0"

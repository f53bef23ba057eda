#!/usr/bin/python3
"""Expected metric values for judge/scoring, computed with scikit-learn.

Regenerate with (Debian's python3-sklearn, not a pyenv python):
    apt-get install -y python3-sklearn
    /usr/bin/python3 judge/scoring/testdata/make_fixtures.py > judge/scoring/testdata/fixtures.json
"""
import json
import sys

import numpy as np
import sklearn
from sklearn import metrics as M

rng = np.random.default_rng(20261129)
cases = []


def classification(name, truth, pred, probs, k):
    labels = list(range(k))
    exp = {
        "accuracy": M.accuracy_score(truth, pred),
        "macro_precision": M.precision_score(truth, pred, average="macro", zero_division=0),
        "macro_recall": M.recall_score(truth, pred, average="macro", zero_division=0),
        "macro_f1": M.f1_score(truth, pred, average="macro", zero_division=0),
        "log_loss": M.log_loss(truth, probs, labels=labels),
    }
    if k == 2:
        exp["precision"] = M.precision_score(truth, pred, pos_label=1, zero_division=0)
        exp["recall"] = M.recall_score(truth, pred, pos_label=1, zero_division=0)
        exp["f1"] = M.f1_score(truth, pred, pos_label=1, zero_division=0)
        if len(set(truth)) == 2:
            exp["roc_auc"] = M.roc_auc_score(truth, probs[:, 1])
    cases.append({
        "name": name, "task": "classification", "classes": k,
        "truth": [int(x) for x in truth], "pred": [int(x) for x in pred],
        "probs": probs.tolist(),
        "expected": {m: float(v) for m, v in exp.items()},
        "confusion": M.confusion_matrix(truth, pred, labels=labels).tolist(),
    })


def random_probs(n, k, truth, skill):
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), truth] += skill
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


for n, k, skill in [(50, 2, 1.0), (1000, 2, 2.0), (7, 2, 0.0), (500, 10, 1.5), (300, 3, 0.5)]:
    truth = rng.integers(0, k, size=n)
    probs = random_probs(n, k, truth, skill)
    pred = probs.argmax(axis=1)
    classification(f"random n={n} k={k}", truth, pred, probs, k)

# Tied scores (rounded probabilities) exercise the AUC tie rule.
truth = rng.integers(0, 2, size=400)
probs = np.round(random_probs(400, 2, truth, 1.0), 1)
probs[:, 0] = 1 - probs[:, 1]
classification("tied probabilities", truth, probs.argmax(axis=1), probs, 2)

# A class never predicted, and a class never present.
truth = np.array([0, 0, 1, 1, 2, 2, 0, 1])
pred = np.array([0, 0, 0, 0, 0, 0, 0, 1])
classification("class never predicted", truth, pred, np.full((8, 3), 1 / 3), 3)
truth = np.array([0, 0, 0, 0, 1, 1])
pred = np.array([0, 2, 0, 2, 1, 1])
classification("class never present", truth, pred, np.full((6, 3), 1 / 3), 3)

# All one class, and overconfident wrong probabilities (log-loss clipping).
truth = np.zeros(20, dtype=int)
pred = np.array([0] * 15 + [1] * 5)
probs = np.zeros((20, 2))
probs[np.arange(20), pred] = 1.0
classification("all one class, hard probabilities", truth, pred, probs, 2)


def regression(name, truth, pred):
    cases.append({
        "name": name, "task": "regression",
        "truth_values": truth.tolist(), "pred_values": pred.tolist(),
        "expected": {
            "rmse": float(np.sqrt(M.mean_squared_error(truth, pred))),
            "mae": float(M.mean_absolute_error(truth, pred)),
            "r2": float(M.r2_score(truth, pred)),
            "rmsle": float(np.sqrt(M.mean_squared_log_error(truth, pred))),
        },
    })


for n in [2, 30, 900]:
    truth = np.exp(rng.normal(12, 0.4, size=n))
    pred = truth * np.exp(rng.normal(0, 0.15, size=n))
    regression(f"prices n={n}", truth, pred)
regression("constant truth, imperfect", np.full(10, 5.0), np.arange(10, dtype=float))
regression("constant truth, perfect", np.full(10, 5.0), np.full(10, 5.0))
regression("zeros", np.array([0.0, 0.0, 1.0]), np.array([0.0, 2.0, 0.0]))

json.dump({
    "generated_by": "/usr/bin/python3 judge/scoring/testdata/make_fixtures.py > judge/scoring/testdata/fixtures.json",
    "scikit_learn": sklearn.__version__, "numpy": np.__version__,
    "cases": cases,
}, sys.stdout, separators=(",", ":"))
sys.stdout.write("\n")

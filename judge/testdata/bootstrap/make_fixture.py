"""Makes fixture.json for TestBootstrapIntervalsAgreeWithNumpy (judge).

    /usr/bin/python3 judge/testdata/bootstrap/make_fixture.py > judge/testdata/bootstrap/fixture.json

It draws labels and predictions for 4,000 examples of 10 classes (about 82%
right; the first half public, the rest private) and computes, with numpy's
own generator (independent of the judge's PCG draws), the 95% percentile
bootstrap interval of accuracy on each half from 20,000 resamples. The
judge's intervals from the same number of its own resamples must agree to
within Monte Carlo error.
"""
import json

import numpy as np

rng = np.random.default_rng(20261205)
n = 4000
truth = rng.integers(0, 10, n)
right = rng.random(n) < 0.82
pred = np.where(right, truth, (truth + rng.integers(1, 10, n)) % 10)
public = np.arange(n) < n // 2

out = {"truth": truth.tolist(), "pred": pred.tolist(), "is_public": public.tolist(), "resamples": 20000, "intervals": {}}
for name, mask in (("public", public), ("private", ~public)):
    correct = (truth[mask] == pred[mask]).astype(float)
    draws = rng.integers(0, correct.size, (out["resamples"], correct.size))
    accuracy = correct[draws].mean(axis=1)
    out["intervals"][name] = {"accuracy": correct.mean(), "lo": float(np.percentile(accuracy, 2.5)), "hi": float(np.percentile(accuracy, 97.5))}
print(json.dumps(out))

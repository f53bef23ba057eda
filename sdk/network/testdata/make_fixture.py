# Writes numpy.npz, read by TestReadNPZFromNumpy. Run with Debian's python3:
#   /usr/bin/python3 make_fixture.py
import numpy as np
np.savez("numpy.npz",
         **{"dense.kernel": np.arange(6, dtype=np.float32).reshape(2, 3) / 4,
            "dense.bias": np.array([1.5, -2.0, 0.25], dtype=np.float32),
            "wide": np.array([[1e-3, 2.0]], dtype=np.float64),
            "scalar": np.float32(7)})

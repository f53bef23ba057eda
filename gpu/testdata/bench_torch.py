# PyTorch baseline for BenchmarkEngine (make bench-engine): the Keras MNIST
# MLP (Rescaling 1/255 -> Dense 128 ReLU -> Dropout 0.2 -> Dense 10), Adam,
# one epoch at each batch size, then inference on the 10k test images in
# batches of 1000 (best of 10). Run by Debian's python3 with python3-torch,
# with the OpenMP build of OpenBLAS (BenchmarkEngine sets LD_LIBRARY_PATH):
#   /usr/bin/python3 bench_torch.py <dir with the MNIST idx .gz files>
# Prints one JSON object.
import gzip, json, os, sys, time

import numpy as np
import torch

def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)

d = sys.argv[1]
train_x = torch.from_numpy(idx(os.path.join(d, "train-images-idx3-ubyte.gz")).reshape(-1, 784).astype(np.float32))
train_y = torch.from_numpy(idx(os.path.join(d, "train-labels-idx1-ubyte.gz")).astype(np.int64))
test_x = torch.from_numpy(idx(os.path.join(d, "t10k-images-idx3-ubyte.gz")).reshape(-1, 784).astype(np.float32))

torch.manual_seed(1)
torch.set_num_threads(os.cpu_count())

def model():
    return torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(128, 10))

def epoch(batch):
    m = model()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    m.train()
    start = time.perf_counter()
    perm = torch.randperm(len(train_x))
    for i in range(0, len(train_x) - batch + 1, batch):
        idx_ = perm[i:i + batch]
        x = train_x[idx_] / 255.0
        opt.zero_grad()
        loss = loss_fn(m(x), train_y[idx_])
        loss.backward()
        opt.step()
    return time.perf_counter() - start, m

result = {"threads": torch.get_num_threads(), "torch": torch.__version__}
result["train_s_per_epoch_32"], _ = epoch(32)
result["train_s_per_epoch_128"], m = epoch(128)
m.eval()
best = None
with torch.no_grad():
    for _ in range(10):
        start = time.perf_counter()
        for i in range(0, len(test_x), 1000):
            torch.softmax(m(test_x[i:i + 1000] / 255.0), dim=1)
        t = time.perf_counter() - start
        best = t if best is None else min(best, t)
result["infer_images_per_s"] = len(test_x) / best
print(json.dumps(result))

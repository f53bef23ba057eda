# PyTorch baseline for BenchmarkEngine (make bench-engine): the Keras MNIST
# MLP (Rescaling 1/255 -> Dense 128 ReLU -> Dropout 0.2 -> Dense 10), Adam,
# one epoch at each batch size, then inference on the 10k test images in
# batches of 1000 (best of 10); then the same for the seed's CNN (training
# on 6,000 images, inference in batches of 100). Run by Debian's python3 with python3-torch,
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

def images_per_s(model, x, batch, reps):
    """Best of reps passes of inference over x in batches of batch."""
    model.eval()
    best = None
    with torch.no_grad():
        for _ in range(reps):
            start = time.perf_counter()
            for i in range(0, len(x), batch):
                torch.softmax(model(x[i:i + batch] / 255.0), dim=1)
            t = time.perf_counter() - start
            best = t if best is None else min(best, t)
    return len(x) / best

result = {"threads": torch.get_num_threads(), "torch": torch.__version__}
result["train_s_per_epoch_32"], _ = epoch(32)
result["train_s_per_epoch_128"], m = epoch(128)
result["infer_images_per_s"] = images_per_s(m, test_x, 1000, 10)

# The seed's CNN (plugins/mnist-cnn): one pass over the first 6,000 training
# images at batch 64, then inference on the 10k test images in batches of
# 100 (best of 3): PyTorch's convolutions ran 8x slower in batches of 1000
# (1,346 images/s against 11,461 on the 2-core machine).
def cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 64, 3), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(576, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))

# Inference on the initial weights, as the Go side measures. (On the MNIST
# test images PyTorch's forward pass ran at about a quarter of its speed on
# random inputs of the same shape, trained or not.)
result["cnn_infer_images_per_s"] = images_per_s(cnn(), test_x.reshape(-1, 1, 28, 28), 100, 3)
c = cnn()
opt = torch.optim.Adam(c.parameters(), lr=1e-3, eps=1e-7)
loss_fn = torch.nn.CrossEntropyLoss()
images = train_x[:6000].reshape(-1, 1, 28, 28)
c.train()
start = time.perf_counter()
for i in range(0, len(images) - 64 + 1, 64):
    opt.zero_grad()
    loss = loss_fn(c(images[i:i + 64] / 255.0), train_y[i:i + 64])
    loss.backward()
    opt.step()
result["cnn_train_s_6k"] = time.perf_counter() - start
print(json.dumps(result))

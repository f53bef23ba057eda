"""Train one of the article's models in PyTorch for a short time, export it
with the SDK's helper (sdk/python/hackarena_export.py), and write PyTorch's
own predictions on every row of the hidden source file, for the end-to-end
test to compare with the judge's.

usage: pytorch_models.py KIND DATA_DIR OUT_DIR
KIND: mnist-dense, mnist-cnn, imdb-embedding, houses-mlp
DATA_DIR: what `hackctl download` fetched (training files); the hidden
source file's path comes from the HIDDEN environment variable.
"""

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.environ["HACKARENA_SDK_PYTHON"])
import hackarena_export as hx  # noqa: E402

torch.manual_seed(0)
np.random.seed(0)
torch.set_num_threads(2)
kind, data, out = sys.argv[1], sys.argv[2], sys.argv[3]
hidden = os.environ["HIDDEN"]


def train(model, x, y, loss_fn, epochs, batch=100, lr=2e-3):
    opt = torch.optim.Adam(model.parameters(), lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def predict(model, x, batch=1000):
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


if kind.startswith("mnist"):
    x = hx.load_mnist_images(os.path.join(data, "train-images-idx3-ubyte.gz"))[:12000]
    y = torch.tensor(hx.load_mnist_labels(os.path.join(data, "train-labels-idx1-ubyte.gz"))[:12000])
    test = hx.load_mnist_images(os.path.join(hidden, "t10k-images-idx3-ubyte.gz"))
    labels = hx.load_mnist_labels(os.path.join(hidden, "t10k-labels-idx1-ubyte.gz"))
    if kind == "mnist-dense":
        # Divides by 255 itself: a plain export, and no preprocess.json.
        class Dense(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.f = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(),
                                             torch.nn.Dropout(0.1), torch.nn.Linear(128, 10))

            def forward(self, v):
                return self.f(v / 255.0)
        model, prep = Dense(), None
        inputs = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        example = torch.zeros(1, 28, 28)
    else:
        # Trained on normalised [n, 1, 28, 28]; preprocess.json says how.
        class CNN(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.features = torch.nn.Sequential(
                    torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                    torch.nn.Conv2d(8, 16, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
                self.out = torch.nn.Linear(16 * 6 * 6, 10)

            def forward(self, v):
                # view(size(0), -1): the Shape → Gather → Unsqueeze → Concat
                # → Reshape chain the importer folds.
                h = self.features(v)
                return torch.log_softmax(self.out(h.view(h.size(0), -1)), dim=1)
        model = CNN()
        mean, std = 0.1307, 0.3081
        prep = hx.image_preprocess(scale=1 / 255 / std, offset=-mean / std)
        inputs = lambda a: ((torch.tensor(a, dtype=torch.float32) / 255 - mean) / std).unsqueeze(1)  # noqa: E731
        example = torch.zeros(1, 1, 28, 28)
    train(model, inputs(x), y, torch.nn.functional.cross_entropy if kind == "mnist-dense" else torch.nn.functional.nll_loss, 1)
    pred = predict(model, inputs(test)).argmax(1).numpy()
    truth = labels
elif kind == "imdb-embedding":
    import gzip
    with gzip.open(os.path.join(data, "train.jsonl.gz"), "rt") as f:
        rows = [json.loads(line) for line in f]
    # The file is sorted by label: a random part of it.
    rows = [rows[i] for i in np.random.permutation(len(rows))[:8000]]
    with gzip.open(hidden, "rt") as f:
        test_rows = [json.loads(line) for line in f]
    texts = [r["text"] for r in rows]
    vocab = hx.build_vocabulary(texts, 5000)
    length = 200
    x = torch.tensor(hx.encode_texts(texts, vocab, length))
    y = torch.tensor([float(r["label"] == "pos" or r["label"] == 1) for r in rows]).unsqueeze(1)

    class Embedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(len(vocab) + 2, 16)
            self.out = torch.nn.Linear(16, 1)

        def forward(self, ids):
            return self.out(self.emb(ids).mean(dim=1))
    model = Embedding()
    train(model, x, y, torch.nn.functional.binary_cross_entropy_with_logits, 3, batch=64, lr=1e-2)
    prep = hx.text_preprocess(vocab, length, threshold=0)
    example = torch.zeros(1, length, dtype=torch.int64)
    pred = (predict(model, torch.tensor(hx.encode_texts([r["text"] for r in test_rows], vocab, length))) > 0).long().squeeze(1).numpy()
    truth = np.array([int(r["label"] == "pos" or r["label"] == 1) for r in test_rows])
elif kind == "houses-mlp":
    cols = hx.read_csv(hidden)
    train_cols = hx.read_csv(os.path.join(data, "train.csv"))
    numeric = ["Gr Liv Area", "Overall Qual", "Year Built", "Total Bsmt SF", "Garage Cars", "Lot Area"]
    features = hx.fit_table(train_cols, numeric, ["Neighborhood"], min_count=5)
    x = torch.tensor(hx.encode_table(train_cols, features))
    prices = np.array([float(v) for v in train_cols["SalePrice"]])
    logp = np.log(prices)
    mu, sd = float(logp.mean()), float(logp.std())
    y = torch.tensor((logp - mu) / sd, dtype=torch.float32).unsqueeze(1)
    model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    train(model, x, y, torch.nn.functional.mse_loss, 60, batch=32, lr=3e-3)
    prep = hx.table_preprocess(features, output={"scale": sd, "offset": mu, "exp": True})
    example = torch.zeros(1, x.shape[1])
    raw = predict(model, torch.tensor(hx.encode_table(cols, features))).squeeze(1).numpy().astype(np.float64)
    pred = np.exp(raw * sd + mu)
    truth = np.array([float(v) for v in cols["SalePrice"]])
else:
    sys.exit("unknown kind " + kind)

hx.export(model, os.path.join(out, "model.onnx"), example, prep)
with open(os.path.join(out, "torch.json"), "w") as f:
    json.dump({"predictions": pred.tolist(), "truth": truth.tolist()}, f)
print("trained and exported", kind)

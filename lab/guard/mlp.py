"""A one-hidden-layer MLP classifier in torch, seeded and single-threaded so that training is repeatable.

scikit-learn's MLPClassifier (float64 numpy) took about 100 s per fit on 4,000 x 384 features on this
project's 2-core CI machine; this float32 torch version of the same model (ReLU, Adam at 1e-3, batches of
200, L2 penalty alpha/2 * |W|^2 per batch, like scikit-learn's) takes a few seconds. It follows the small
part of the scikit-learn estimator API that training uses: fit and predict_proba.
"""

from __future__ import annotations

import numpy as np

from agents.safety.heads import Head


class TorchMLPClassifier:
    def __init__(self, hidden: int, alpha: float, epochs: int, seed: int, batch_size: int = 200) -> None:
        self.hidden = hidden
        self.alpha = alpha
        self.epochs = epochs
        self.seed = seed
        self.batch_size = batch_size
        self.head: Head | None = None

    def fit(
        self, features: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> TorchMLPClassifier:
        import torch
        from torch import nn

        torch.manual_seed(self.seed)
        order = torch.Generator().manual_seed(self.seed)
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        y = torch.from_numpy(np.asarray(labels, dtype=np.float32))
        importance = torch.ones_like(y) if sample_weight is None else torch.from_numpy(np.asarray(sample_weight, dtype=np.float32))
        model = nn.Sequential(nn.Linear(x.shape[1], self.hidden), nn.ReLU(), nn.Linear(self.hidden, 1))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        weights = [model[0].weight, model[2].weight]
        loss_fn = nn.BCEWithLogitsLoss(reduction="none")
        for _ in range(self.epochs):
            permutation = torch.randperm(len(y), generator=order)
            for start in range(0, len(y), self.batch_size):
                batch = permutation[start : start + self.batch_size]
                loss = (loss_fn(model(x[batch]).squeeze(1), y[batch]) * importance[batch]).mean()
                loss = loss + 0.5 * self.alpha * sum((w * w).sum() for w in weights) / len(batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        layers = [(layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy()) for layer in (model[0], model[2])]
        self.head = Head(tuple(layers))
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        if self.head is None:
            raise RuntimeError("fit the classifier before predicting")
        unsafe = self.head.unsafe_probability(np.asarray(features, dtype=np.float32))
        return np.stack([1.0 - unsafe, unsafe], axis=1)

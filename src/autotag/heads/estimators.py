"""scikit-learn-style estimators over embeddings: `__init__` stores parameters, `fit` returns self,
learned attributes end in `_`, `predict_proba` columns follow `classes_`, predicting before `fit`
raises NotFittedError.

- `HeadClassifier`: a linear or MLP head on embeddings; 1-D targets train a softmax (single label),
  2-D 0/1 targets train independent sigmoids (multi-label) with a registered loss.
- `CompositeTagger`: the composite model. Staged: visual head, user-tag head, fusion over their
  concatenated logits, label-count regressor over the same concatenation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from autotag.heads.training import StageConfig, train_stage
from autotag.types import AutotagError
from autotag.usertags import normalise_user_tag

# The user-tag head sees a sparse 0/1 bag (about two tags an image), so a logit moves by only a couple
# of weights per image, where the visual head sums 1280 standardised inputs. At the shared learning
# rate it barely left its initial loss on small data (tiny FashionMosaic: BCE 0.686 -> 0.574 in 240
# steps, tag-only H-F1 0.27 vs 0.43 for scikit-learn's logistic regression on the same bags, fusion no
# better than the image alone); ten times the rate reaches 0.46 and the fusion beats the image.
TAG_LR_SCALE = 10.0


class NotFittedError(AutotagError, AttributeError):
    """The estimator was used before `fit`."""


def check_is_fitted(estimator: Any, attribute: str = "module_") -> None:
    if getattr(estimator, attribute, None) is None:
        raise NotFittedError(f"{type(estimator).__name__} is not fitted yet; call fit(...) first")


def build_tag_vocabulary(user_tags: Sequence[Sequence[str]], max_tags: int = 1000, min_count: int = 2) -> list[str]:
    """The `max_tags` most frequent user tags (seen at least `min_count` times), most frequent first."""
    counts = Counter(normalise_user_tag(t) for tags in user_tags for t in tags if normalise_user_tag(t))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [t for t, c in ranked if c >= min_count][:max_tags]


def tag_bags(user_tags: Sequence[Sequence[str]] | None, vocabulary: Sequence[str], n: int) -> np.ndarray:
    """(n, V) float32 binary bag of user tags; unknown tags are ignored, None means no tags at all."""
    out = np.zeros((n, len(vocabulary)), np.float32)
    if user_tags is None:
        return out
    if len(user_tags) != n:
        raise AutotagError(f"got user tags for {len(user_tags)} images but {n} embeddings")
    column = {t: j for j, t in enumerate(vocabulary)}
    for i, tags in enumerate(user_tags):
        for t in tags or ():
            j = column.get(normalise_user_tag(t))
            if j is not None:
                out[i, j] = 1
    return out


def _as_float32(x: Any, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise AutotagError(f"{what} must be a 2-D (images, dims) array, got shape {arr.shape}")
    return arr


def _standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) per dimension. The scale is floored at a tenth of the median spread: a dimension
    (nearly) constant on the training images, such as a feature that never fires on them, would
    otherwise blow up by ~1e6 on new images where it does fire and swamp every other input."""
    spread = X.std(0)
    floor = 0.1 * float(np.median(spread)) if spread.size else 0.0
    return X.mean(0), np.maximum(spread, floor) + 1e-6


def _split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * fraction))) if n >= 10 else 0
    return order[n_val:], order[:n_val]


class HeadClassifier:
    """A head on fixed embeddings. hidden=0 is a linear (logistic) layer, hidden>0 a one-hidden-layer MLP."""

    def __init__(self, hidden: int = 0, dropout: float = 0.2, loss: str = "bce", epochs: int = 60,
                 batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 3e-4, schedule: str = "cosine",
                 patience: int = 8, validation_fraction: float = 0.1, seed: int = 0) -> None:
        self.hidden = hidden
        self.dropout = dropout
        self.loss = loss
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.seed = seed

    def _stage(self) -> StageConfig:
        return StageConfig(self.epochs, self.batch_size, self.lr, self.weight_decay, self.schedule,
                           self.patience, self.seed)

    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None) -> HeadClassifier:
        import torch

        from autotag.heads.losses import create_loss
        from autotag.heads.modules import _mlp

        X = _as_float32(X, "X")
        y = np.asarray(y)
        self.multilabel_ = y.ndim == 2
        if self.multilabel_:
            self.classes_ = np.arange(y.shape[1])
            target = y.astype(np.float32)
            loss_fn = create_loss(self.loss)
        else:
            self.classes_, target = np.unique(y, return_inverse=True)
            target = target.astype(np.int64)
            loss_fn = torch.nn.CrossEntropyLoss()
        if X_val is None:
            train_idx, val_idx = _split_validation(len(X), self.validation_fraction, self.seed)
            X_val, t_val = X[val_idx], target[val_idx]
            X, target = X[train_idx], target[train_idx]
        else:
            X_val = _as_float32(X_val, "X_val")
            y_val = np.asarray(y_val)
            if self.multilabel_:
                t_val = y_val.astype(np.float32)
            else:
                lookup = {c: i for i, c in enumerate(self.classes_.tolist())}
                unseen = sorted({str(c) for c in y_val.tolist() if c not in lookup})
                if unseen:
                    raise AutotagError(f"validation labels {unseen[:5]} never occur in the training labels; "
                                       "every class needs training examples")
                t_val = np.array([lookup[c] for c in y_val.tolist()], np.int64)
        self.mean_, self.scale_ = _standardiser(X)
        torch.manual_seed(self.seed)
        self.module_ = _mlp(X.shape[1], self.hidden, len(self.classes_), self.dropout)
        def norm(a: np.ndarray) -> np.ndarray:
            return (a - self.mean_) / self.scale_

        self.history_ = train_stage([self.module_], self.module_, loss_fn, [norm(X)], target,
                                    [norm(X_val)] if len(X_val) else None, t_val if len(X_val) else None,
                                    self._stage(), "head")
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        import torch

        check_is_fitted(self)
        X = _as_float32(X, "X")
        with torch.no_grad():
            return self.module_(torch.from_numpy((X - self.mean_) / self.scale_)).numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        logits = self.decision_function(X).astype(np.float64)
        if self.multilabel_:
            return _sigmoid(logits)
        logits -= logits.max(1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)
        if self.multilabel_:
            return (proba >= 0.5).astype(np.uint8)
        return self.classes_[proba.argmax(1)]


class CompositeTagger:
    """Image embedding + user tags -> label probabilities and a label count.

    fit(embeddings, Y, user_tags, val=(embeddings, Y, user_tags)) with Y an (N, L) 0/1 matrix whose
    columns are `labels`. Stages: (1) visual head, (2) user-tag head on a binary bag of the
    `max_user_tags` most frequent tags, (3) fusion: a linear layer over the two heads' concatenated
    logits, (4) label count: a small MLP with dropout 0.5 over the same concatenation (as
    probabilities), regressing the count normalised by the training mean and spread.
    """

    def __init__(self, labels: Sequence[str] | None = None, visual_hidden: int = 512, tag_hidden: int = 256,
                 count_hidden: int = 64, visual_dropout: float = 0.3, tag_dropout: float = 0.2,
                 loss: str = "bce", use_user_tags: bool = True, max_user_tags: int = 1000,
                 min_tag_count: int = 2, epochs: int = 60, batch_size: int = 256, lr: float = 1e-3,
                 weight_decay: float = 3e-4, schedule: str = "cosine", patience: int = 8,
                 validation_fraction: float = 0.1, seed: int = 0) -> None:
        self.labels = labels
        self.visual_hidden = visual_hidden
        self.tag_hidden = tag_hidden
        self.count_hidden = count_hidden
        self.visual_dropout = visual_dropout
        self.tag_dropout = tag_dropout
        self.loss = loss
        self.use_user_tags = use_user_tags
        self.max_user_tags = max_user_tags
        self.min_tag_count = min_tag_count
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items() if not k.endswith("_")}

    def _stage(self, seed_offset: int, small: bool = False, lr_scale: float = 1.0) -> StageConfig:
        if small:  # fusion and count: few parameters, fitted on the smaller validation split
            return StageConfig(self.epochs * 3, 128, self.lr * 5, self.weight_decay, self.schedule,
                               max(self.patience, 15), self.seed + seed_offset)
        return StageConfig(self.epochs, self.batch_size, self.lr * lr_scale, self.weight_decay, self.schedule,
                           self.patience, self.seed + seed_offset)

    def fit(self, embeddings: Any, Y: Any, user_tags: Sequence[Sequence[str]] | None = None,
            val: tuple[Any, Any, Sequence[Sequence[str]] | None] | None = None,
            on_epoch: Callable[[dict[str, float]], None] | None = None) -> CompositeTagger:
        import torch

        from autotag.heads.losses import create_loss
        from autotag.heads.modules import build_composite

        X = _as_float32(embeddings, "embeddings")
        Y = np.asarray(Y, dtype=np.float32)
        if Y.ndim != 2 or len(Y) != len(X):
            raise AutotagError(f"Y must be (images, labels) with {len(X)} rows, got shape {Y.shape}")
        self.classes_ = np.array(list(self.labels) if self.labels is not None else range(Y.shape[1]), dtype=object)
        if len(self.classes_) != Y.shape[1]:
            raise AutotagError(f"{len(self.classes_)} label names for {Y.shape[1]} label columns")
        tags = list(user_tags) if (user_tags is not None and self.use_user_tags) else None
        if val is None:
            train_idx, val_idx = _split_validation(len(X), self.validation_fraction, self.seed)
            val = (X[val_idx], Y[val_idx], [tags[i] for i in val_idx] if tags else None)
            X, Y = X[train_idx], Y[train_idx]
            tags = [tags[i] for i in train_idx] if tags else None
        vX, vY = _as_float32(val[0], "validation embeddings"), np.asarray(val[1], np.float32)
        vtags = list(val[2]) if (val[2] is not None and tags is not None) else None

        self.vocabulary_ = build_tag_vocabulary(tags, self.max_user_tags, self.min_tag_count) if tags else []
        counts = Y.sum(1)
        self.count_mean_ = float(counts.mean())
        self.count_std_ = float(counts.std() + 1e-6)
        self.max_count_ = int(max(1, counts.max()))
        self.config_ = {
            "embedding_dim": int(X.shape[1]), "n_labels": int(Y.shape[1]), "n_user_tags": len(self.vocabulary_),
            "visual_hidden": self.visual_hidden, "tag_hidden": self.tag_hidden, "count_hidden": self.count_hidden,
            "visual_dropout": self.visual_dropout, "tag_dropout": self.tag_dropout,
        }
        torch.manual_seed(self.seed)
        heads = build_composite(self.config_)
        mean, scale = _standardiser(X)
        heads.embedding_mean.copy_(torch.from_numpy(mean))
        heads.embedding_scale.copy_(torch.from_numpy(scale))
        bags, vbags = tag_bags(tags, self.vocabulary_, len(X)), tag_bags(vtags, self.vocabulary_, len(vX))
        loss_fn = create_loss(self.loss)
        has_val = len(vX) > 0
        history = []

        def norm(e: torch.Tensor) -> torch.Tensor:
            return (e - heads.embedding_mean) / heads.embedding_scale

        history += train_stage([heads.visual], lambda e: heads.visual(norm(e)), loss_fn, [X], Y,
                               [vX] if has_val else None, vY if has_val else None, self._stage(0), "visual",
                               on_epoch)
        if heads.user_tags is not None:
            history += train_stage([heads.user_tags], heads.user_tags, loss_fn, [bags], Y,
                                   [vbags] if has_val else None, vY if has_val else None,
                                   self._stage(1, lr_scale=TAG_LR_SCALE),
                                   "user-tags", on_epoch)
        with torch.no_grad():
            branches = heads.branch_logits(torch.from_numpy(X), torch.from_numpy(bags)).numpy()
            vbranches = heads.branch_logits(torch.from_numpy(vX), torch.from_numpy(vbags)).numpy()
        # The fusion and count stages learn from the heads' outputs on the validation split (80% to fit,
        # 20% to early-stop): on the training split the heads are over-confident, which would teach the
        # fusion to trust them blindly (stacking). Without validation data they use the training split.
        if has_val:
            cut = max(1, int(len(vbranches) * 0.8)) if len(vbranches) >= 10 else len(vbranches)
            fit_b, fit_y = vbranches[:cut], vY[:cut]
            mon_b, mon_y = (vbranches[cut:], vY[cut:]) if cut < len(vbranches) else (None, None)
        else:
            fit_b, fit_y, mon_b, mon_y = branches, Y, None, None
        history += train_stage([heads.fusion], heads.fusion, loss_fn, [fit_b], fit_y,
                               [mon_b] if mon_b is not None else None, mon_y, self._stage(2, True), "fusion",
                               on_epoch)

        def norm_count(y: np.ndarray) -> np.ndarray:
            return ((y.sum(1) - self.count_mean_) / self.count_std_).astype(np.float32)

        history += train_stage([heads.count], lambda b: heads.count(torch.sigmoid(b)).squeeze(1),
                               torch.nn.MSELoss(), [fit_b], norm_count(fit_y),
                               [mon_b] if mon_b is not None else None,
                               norm_count(mon_y) if mon_y is not None else None, self._stage(3, True), "count",
                               on_epoch)
        heads.eval()
        self.module_ = heads
        self.history_ = history
        return self

    # -- prediction ----------------------------------------------------------------------------------
    def _forward(self, embeddings: Any, user_tags: Sequence[Sequence[str]] | None):
        import torch

        check_is_fitted(self)
        X = _as_float32(embeddings, "embeddings")
        if X.shape[1] != self.config_["embedding_dim"]:
            raise AutotagError(f"embeddings have {X.shape[1]} dims but the model expects "
                               f"{self.config_['embedding_dim']}; use the encoder the model was trained with")
        bags = tag_bags(user_tags, self.vocabulary_, len(X)) if self.vocabulary_ else None
        with torch.no_grad():
            fused, count, branches = self.module_(torch.from_numpy(X),
                                                  torch.from_numpy(bags) if bags is not None else None)
        return fused.numpy(), count.numpy(), branches.numpy()

    def predict_proba(self, embeddings: Any, user_tags: Sequence[Sequence[str]] | None = None) -> np.ndarray:
        """(N, L) probabilities of the fused head; columns follow `classes_`."""
        return _sigmoid(self._forward(embeddings, user_tags)[0])

    def predict_visual_proba(self, embeddings: Any) -> np.ndarray:
        """(N, L) probabilities of the visual head alone."""
        return _sigmoid(self._forward(embeddings, None)[2][:, : len(self.classes_)])

    def tag_grounding(self) -> dict[str, np.ndarray]:
        """What typing each vocabulary tag alone tells the user-tag head about each label: the lift
        (P(label | tag) - P(label | no tag)) / (1 - P(label | no tag)) in 0..1, columns follow `classes_`.
        Empty without a user-tag head. This is the grounding `autotag.suggest.audit` scores tags with."""
        import torch

        check_is_fitted(self)
        if not self.vocabulary_:
            return {}
        bags = np.vstack([np.zeros(len(self.vocabulary_), np.float32), np.eye(len(self.vocabulary_), dtype=np.float32)])
        with torch.no_grad():
            p = _sigmoid(self.module_.user_tags(torch.from_numpy(bags)).numpy())
        lift = np.clip((p[1:] - p[0]) / np.maximum(1.0 - p[0], 1e-6), 0.0, 1.0).astype(np.float32)
        return dict(zip(self.vocabulary_, lift, strict=True))

    def _counts(self, normalised: np.ndarray) -> np.ndarray:
        """The count head's normalised output -> int label counts in [1, max count seen in training]."""
        return np.clip(np.rint(normalised * self.count_std_ + self.count_mean_), 1, self.max_count_).astype(np.int64)

    def predict_count(self, embeddings: Any, user_tags: Sequence[Sequence[str]] | None = None) -> np.ndarray:
        """(N,) int label counts in [1, max count seen in training]."""
        return self._counts(self._forward(embeddings, user_tags)[1])

    def predict_proba_and_count(self, embeddings: Any, user_tags: Sequence[Sequence[str]] | None = None
                                ) -> tuple[np.ndarray, np.ndarray]:
        """`predict_proba` and `predict_count` from one pass through the heads."""
        fused, count, _ = self._forward(embeddings, user_tags)
        return _sigmoid(fused), self._counts(count)

    def predict(self, embeddings: Any, user_tags: Sequence[Sequence[str]] | None = None) -> np.ndarray:
        """(N, L) 0/1: the predicted-count highest-scoring labels of each image."""
        from autotag.decide import decide

        scores, counts = self.predict_proba_and_count(embeddings, user_tags)
        return decide("top-k-predicted", scores, counts=counts)

    # -- state for autotag.artifact -----------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(JSON-able description, tensors) that `from_state` rebuilds the fitted estimator from."""
        check_is_fitted(self)
        meta = {"params": self.get_params(), "heads": self.config_, "vocabulary": self.vocabulary_,
                "labels": [str(c) for c in self.classes_], "count_mean": self.count_mean_,
                "count_std": self.count_std_, "max_count": self.max_count_}
        meta["params"]["labels"] = meta["labels"]
        return meta, {k: v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}

    @classmethod
    def from_state(cls, meta: dict[str, Any], tensors: dict[str, Any]) -> CompositeTagger:
        from autotag.heads.modules import build_composite

        params = dict(meta["params"])
        try:
            est = cls(**params)
        except TypeError as exc:
            raise AutotagError(f"model parameters do not match this autotag version: {exc}") from exc
        est.classes_ = np.array(meta["labels"], dtype=object)
        est.vocabulary_ = list(meta["vocabulary"])
        est.count_mean_, est.count_std_ = float(meta["count_mean"]), float(meta["count_std"])
        est.max_count_ = int(meta["max_count"])
        est.config_ = dict(meta["heads"])
        est.history_ = []
        module = build_composite(est.config_)
        expected = module.state_dict()
        missing = sorted(set(expected) - set(tensors))
        unknown = sorted(set(tensors) - set(expected))
        if missing or unknown:
            raise AutotagError(f"model weights do not match the model config (missing {missing[:3]}, "
                               f"unknown {unknown[:3]}); the folder is corrupted or from another version")
        for key, value in tensors.items():
            if tuple(value.shape) != tuple(expected[key].shape):
                raise AutotagError(f"weight {key} has shape {tuple(value.shape)} but the config needs "
                                   f"{tuple(expected[key].shape)}; the folder is corrupted or mismatched")
        module.load_state_dict(tensors)
        module.eval()
        est.module_ = module
        return est


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-x)) written so that very negative logits give 0 without an overflow warning
    return np.exp(-np.logaddexp(0.0, -x.astype(np.float64)))

"""The torch modules of the composite model: visual head, user-tag head, fusion head, label-count head.

Every module is built from plain integers (its `config()`), so a saved folder rebuilds it without
any training code: `build_composite(config)` + `load_state_dict`.
"""

from __future__ import annotations

from typing import Any


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float):
    from torch import nn

    if hidden <= 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))
    return nn.Sequential(
        nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
    )


def build_composite(config: dict[str, Any]):
    """config keys: embedding_dim, n_labels, n_user_tags, visual_hidden, tag_hidden, count_hidden,
    visual_dropout, tag_dropout (count dropout is 0.5 by design)."""
    import torch
    from torch import nn

    class CompositeHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c = config
            n_labels = int(c["n_labels"])
            self.n_labels = n_labels
            self.n_user_tags = int(c.get("n_user_tags", 0))
            dim = int(c["embedding_dim"])
            # standardisation of the embeddings, fitted on the training split and saved with the weights
            self.register_buffer("embedding_mean", torch.zeros(dim))
            self.register_buffer("embedding_scale", torch.ones(dim))
            self.visual = _mlp(int(c["embedding_dim"]), int(c.get("visual_hidden", 0)), n_labels,
                               float(c.get("visual_dropout", 0.2)))
            self.user_tags = (_mlp(self.n_user_tags, int(c.get("tag_hidden", 256)), n_labels,
                                   float(c.get("tag_dropout", 0.2))) if self.n_user_tags else None)
            branches = 2 if self.user_tags is not None else 1
            self.fusion = nn.Linear(branches * n_labels, n_labels)
            count_hidden = int(c.get("count_hidden", 64))
            self.count = nn.Sequential(nn.Linear(branches * n_labels, count_hidden), nn.GELU(), nn.Dropout(0.5),
                                       nn.Linear(count_hidden, 1))
            with torch.no_grad():  # start the fusion as "average the two heads' logits"
                self.fusion.weight.zero_()
                self.fusion.bias.zero_()
                for b in range(branches):
                    self.fusion.weight[:, b * n_labels:(b + 1) * n_labels] += torch.eye(n_labels) / branches

        def branch_logits(self, embeddings: torch.Tensor, tag_bags: torch.Tensor | None) -> torch.Tensor:
            parts = [self.visual((embeddings - self.embedding_mean) / self.embedding_scale)]
            if self.user_tags is not None:
                if tag_bags is None:
                    tag_bags = embeddings.new_zeros((embeddings.shape[0], self.n_user_tags))
                parts.append(self.user_tags(tag_bags))
            return torch.cat(parts, dim=1)

        def forward(self, embeddings: torch.Tensor, tag_bags: torch.Tensor | None = None):
            """-> (fused logits (N, L), normalised count (N,), branch logits (N, branches*L))."""
            branches = self.branch_logits(embeddings, tag_bags)
            fused = self.fusion(branches)
            count = self.count(torch.sigmoid(branches)).squeeze(1)
            return fused, count, branches

    return CompositeHeads()

"""reclnet.train: the RecLNet model in PyTorch, track-feature datasets, training.

Needs the ``train`` extra (torch). Nothing in ``reclnet.runtime`` imports this.
"""

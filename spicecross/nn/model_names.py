"""Names of the seed paper's networks (torch-free, so the CLI can offer them as choices).

:mod:`spicecross.nn.models` builds them; the same names select the dataset.
"""
#: Names accepted by :func:`spicecross.nn.models.build_model` (and by the dataset loader and
#: the ``train`` command).
MODEL_NAMES: tuple[str, ...] = ("mnist", "cifar10", "cifar100")

"""The seed paper's three CNNs (Souto et al., MemTorch on MNIST/CIFAR10/CIFAR100).

Every layer is a plain ``nn.Conv2d``, ``nn.Linear``, ``nn.BatchNorm2d``, ``nn.ReLU``,
``nn.MaxPool2d``, ``nn.Dropout`` or ``nn.Flatten`` module held in ``nn.Sequential`` containers,
so a later pass can walk ``model.named_modules()`` and swap each Conv2d/Linear for a
crossbar-backed version with ``setattr`` on its parent.

Convolutions carry no bias because a BatchNorm follows each of them (a conv bias would be
cancelled by the BatchNorm's mean subtraction); Linear layers keep theirs.
"""
from __future__ import annotations

from torch import Tensor, nn

__all__ = [
    "MODEL_NAMES",
    "INPUT_SHAPES",
    "NUM_CLASSES",
    "MnistCNN",
    "Cifar10CNN",
    "Cifar100CNN",
    "build_model",
]


def _conv_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3×3 convolutions (padding 1), each followed by BatchNorm2d and ReLU, then 2×2 max-pool."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=2, stride=2),
    )


class MnistCNN(nn.Module):
    """MNIST network: blocks of 16 and 32 channels, then Flatten and Linear(32·7·7 → 10).

    Input ``(N, 1, 28, 28)``, output ``(N, 10)`` logits. About 32 k parameters.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(_conv_block(1, 16), _conv_block(16, 32))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """Return class logits for a batch of normalised 1×28×28 images."""
        return self.classifier(self.features(x))


class Cifar10CNN(nn.Module):
    """CIFAR10 network: blocks of 16/32/64 channels, dropout, Linear(64·4·4 → 128 → 10).

    Input ``(N, 3, 32, 32)``, output ``(N, 10)`` logits.
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.3) -> None:
        super().__init__()
        self.features = nn.Sequential(_conv_block(3, 16), _conv_block(16, 32), _conv_block(32, 64))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(64 * 4 * 4, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Return class logits for a batch of normalised 3×32×32 images."""
        return self.classifier(self.features(x))


class Cifar100CNN(nn.Module):
    """CIFAR100 network: blocks of 32/64/128 channels, dropout, Linear(128·4·4 → 512 → 256 → 100).

    Input ``(N, 3, 32, 32)``, output ``(N, 100)`` logits.
    """

    def __init__(self, num_classes: int = 100, dropout: float = 0.3) -> None:
        super().__init__()
        self.features = nn.Sequential(_conv_block(3, 32), _conv_block(32, 64), _conv_block(64, 128))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(128 * 4 * 4, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(512, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Return class logits for a batch of normalised 3×32×32 images."""
        return self.classifier(self.features(x))


_MODELS: dict[str, type[nn.Module]] = {
    "mnist": MnistCNN,
    "cifar10": Cifar10CNN,
    "cifar100": Cifar100CNN,
}

from .model_names import MODEL_NAMES  # noqa: E402 (torch-free, for the CLI); keys of _MODELS

#: Input shape ``(C, H, W)`` of one image for each model.
INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
}

#: Number of output classes of each model.
NUM_CLASSES: dict[str, int] = {"mnist": 10, "cifar10": 10, "cifar100": 100}


def build_model(name: str) -> nn.Module:
    """Return a freshly initialised network for ``name`` ("mnist", "cifar10" or "cifar100").

    Raises ``ValueError`` naming the bad name and the valid ones otherwise. Seed torch
    (``torch.manual_seed``) before calling for reproducible initial weights.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _MODELS:
        raise ValueError(f"unknown model name {name!r}: expected one of {', '.join(MODEL_NAMES)}")
    return _MODELS[key]()

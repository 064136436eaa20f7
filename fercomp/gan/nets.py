"""An auxiliary-classifier GAN (AC-GAN, Odena et al. 2017) sized for 48x48 grayscale faces.

The generator is a DCGAN (transposed convs 6 -> 12 -> 24 -> 48 px) whose noise is multiplied by
a learned class embedding, so one network draws every class. The discriminator has two heads on
a shared trunk: real/fake and the 7-way class; spectral normalisation keeps it from overpowering
the generator without batch statistics mixing real and fake images.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

IMAGE_SIZE = 48
_BASE = IMAGE_SIZE // 8  # three stride-2 steps from 6x6


class Generator(nn.Module):
    def __init__(self, num_classes: int, z_dim: int = 100, width: int = 64):
        super().__init__()
        self.num_classes, self.z_dim, self.width = num_classes, z_dim, width
        self.embed = nn.Embedding(num_classes, z_dim)
        self.project = nn.Sequential(
            nn.Linear(z_dim, 4 * width * _BASE * _BASE, bias=False),
            nn.BatchNorm1d(4 * width * _BASE * _BASE),
            nn.ReLU(),
        )

        def up(cin: int, cout: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *up(4 * width, 2 * width),  # 12 px
            *up(2 * width, width),  # 24 px
            nn.ConvTranspose2d(width, 1, 4, 2, 1),  # 48 px
            nn.Tanh(),
        )

    def forward(self, z, labels):
        h = self.project(z * self.embed(labels))
        return self.body(h.view(len(z), 4 * self.width, _BASE, _BASE))


class Discriminator(nn.Module):
    def __init__(self, num_classes: int, width: int = 64):
        super().__init__()

        def down(cin: int, cout: int) -> list[nn.Module]:
            return [spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]

        self.trunk = nn.Sequential(
            *down(1, width),  # 24 px
            *down(width, 2 * width),  # 12 px
            *down(2 * width, 4 * width),  # 6 px
            nn.Flatten(),
            nn.Dropout(0.3),
        )
        features = 4 * width * _BASE * _BASE
        self.real_fake = spectral_norm(nn.Linear(features, 1))
        self.classify = nn.Linear(features, num_classes)

    def forward(self, x):
        h = self.trunk(x)
        return self.real_fake(h).squeeze(1), self.classify(h)

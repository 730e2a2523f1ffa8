"""The four networks radview ships, in PyTorch (training only; the app runs their ONNX export).

* :class:`UNet25D` -- ``liver-tumor-seg``: a 2.5D U-Net (neighbouring slices as channels),
  background / liver / tumour logits at the input resolution.
* :class:`DeepLabV3Plus` -- ``liver-seg-deeplab``: a small ResNet encoder (output stride 16),
  ASPP and the DeepLabV3+ decoder (low-level features at stride 4), background / liver.
* :class:`CnnLstmStager` -- ``liver-stage-cnnlstm``: a per-slice CNN encoder, a bidirectional
  LSTM over the liver slices, four stage logits (Mild, Moderate, Severe, End-stage).
* :class:`SliceTriageNet` -- ``slice-triage``: five strided convolutions and three fully
  connected layers, two logits (no tumour / tumour) per slice.

Every network is export-friendly: static control flow, BatchNorm (folded by the ONNX exporter
in eval mode), bilinear upsampling with ``align_corners=False``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["UNet25D", "DeepLabV3Plus", "CnnLstmStager", "SliceTriageNet", "parameter_count",
           "LogitAverage"]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv_bn_relu(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


# ---------------------------------------------------------------------------- U-Net
class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [_conv_bn_relu(cin, cout), _conv_bn_relu(cout, cout)]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UNet25D(nn.Module):
    """U-Net with ``depth`` poolings; channels ``base * 2**level``; input H, W divisible by
    ``2**depth``."""

    def __init__(self, in_channels: int = 3, classes: int = 3, base: int = 16, depth: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        widths = [base * 2 ** level for level in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for width in widths[:-1]:
            self.down.append(_DoubleConv(cin, width))
            cin = width
        self.bottom = _DoubleConv(widths[-2], widths[-1], dropout)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for level in reversed(range(depth)):
            self.up.append(nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2))
            self.merge.append(_DoubleConv(2 * widths[level], widths[level]))
        self.head = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


# ---------------------------------------------------------------------------- DeepLabV3+
class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(cin, cout, stride, dilation)
        self.conv2 = nn.Sequential(
            nn.Conv2d(cout, cout, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class _ASPP(nn.Module):
    def __init__(self, cin: int, cout: int, rates: tuple[int, ...] = (3, 6, 9)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                           nn.ReLU(inplace=True))]
            + [_conv_bn_relu(cin, cout, dilation=rate) for rate in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False),
                                  nn.ReLU(inplace=True))
        self.project = nn.Sequential(
            nn.Conv2d(cout * (len(rates) + 2), cout, 1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x).expand(-1, -1, x.shape[2], x.shape[3])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    """A ResNet-10-like encoder (16, 32, 64, 128 channels; the last stage dilated so the
    output stride is 16), ASPP (rates 3/6/9 at stride 16 for 224-pixel inputs), and the
    DeepLabV3+ decoder joining the stride-4 features. Input sides must be divisible by 16."""

    def __init__(self, in_channels: int = 3, classes: int = 2, width: int = 16) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(_conv_bn_relu(in_channels, w, stride=2), _conv_bn_relu(w, w))
        self.layer1 = _BasicBlock(w, 2 * w, stride=2)  # stride 4: low-level features
        self.layer2 = _BasicBlock(2 * w, 4 * w, stride=2)  # stride 8
        self.layer3 = _BasicBlock(4 * w, 8 * w, stride=2)  # stride 16
        self.layer4 = _BasicBlock(8 * w, 8 * w, dilation=2)  # stride 16, dilated
        self.aspp = _ASPP(8 * w, 4 * w)
        self.low = nn.Sequential(nn.Conv2d(2 * w, w, 1, bias=False), nn.BatchNorm2d(w),
                                 nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(_conv_bn_relu(5 * w, 4 * w), _conv_bn_relu(4 * w, 4 * w))
        self.head = nn.Conv2d(4 * w, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Fixed scale factors (input sides divisible by 16) keep the ONNX graph's output shape
        # static, so the registry can check it against the manifest.
        low = self.layer1(self.stem(x))
        deep = self.aspp(self.layer4(self.layer3(self.layer2(low))))
        deep = F.interpolate(deep, scale_factor=4.0, mode="bilinear", align_corners=False)
        out = self.head(self.decoder(torch.cat([deep, self.low(low)], dim=1)))
        return F.interpolate(out, scale_factor=4.0, mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------- CNN-LSTM
class CnnLstmStager(nn.Module):
    """Input (N, T, C, H, W): T liver slices, inferior to superior. Each slice -> a feature
    vector (4 strided conv blocks, global average and max pooling); a bidirectional LSTM reads
    the sequence; the mean of its outputs -> 4 logits.

    With ``liver_mask`` the input has a second channel, the liver mask (1 inside the liver), and
    each slice's features are also pooled inside the liver. Pooled over a whole 448 mm slice
    the liver's texture (what separates Mild from Moderate) is averaged with the abdomen; the
    slice-wide pooling stays for what lies outside the liver (spleen size, ascites).
    """

    STRIDE = 16  # the encoder's four stride-2 convolutions

    def __init__(self, classes: int = 4, width: int = 16, hidden: int = 64,
                 dropout: float = 0.2, liver_mask: bool = False) -> None:
        super().__init__()
        w = width
        self.liver_mask = liver_mask  # input sides must then be divisible by STRIDE
        self.encoder = nn.Sequential(
            _conv_bn_relu(2 if liver_mask else 1, w, stride=2), _conv_bn_relu(w, w),
            _conv_bn_relu(w, 2 * w, stride=2), _conv_bn_relu(2 * w, 2 * w),
            _conv_bn_relu(2 * w, 4 * w, stride=2), _conv_bn_relu(4 * w, 4 * w),
            _conv_bn_relu(4 * w, 4 * w, stride=2),
        )
        # average + max pooled over the slice, and over the liver when there is a mask
        self.features = (16 if liver_mask else 8) * w
        self.lstm = nn.LSTM(self.features, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[0], x.shape[1]
        slices = x.reshape(n * t, x.shape[2], x.shape[3], x.shape[4])
        maps = self.encoder(slices)
        pooled = [maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))]
        if self.liver_mask:
            # the mask on the feature grid: the liver's share of each feature pixel
            inside = F.avg_pool2d(slices[:, 1:2], self.STRIDE)
            area = inside.sum(dim=(2, 3)) + 1e-3
            pooled.append((maps * inside).sum(dim=(2, 3)) / area)
            # features are >= 0 after ReLU, so outside pixels (set to 0) never win the max
            pooled.append((maps * (inside > 0.5).to(maps.dtype)).amax(dim=(2, 3)))
        feats = torch.cat(pooled, dim=1)
        sequence, _ = self.lstm(feats.reshape(n, t, self.features))
        return self.head(self.dropout(sequence.mean(dim=1)))


# ---------------------------------------------------------------------------- triage
class SliceTriageNet(nn.Module):
    """Five strided 3x3 convolutions (16-128 channels), global average and max pooling, then
    three fully connected layers (256, 64, 2)."""

    def __init__(self, in_channels: int = 1, width: int = 16, dropout: float = 0.3) -> None:
        super().__init__()
        w = width
        chans = [in_channels, w, 2 * w, 4 * w, 6 * w, 8 * w]
        self.convs = nn.Sequential(*[_conv_bn_relu(a, b, stride=2)
                                     for a, b in zip(chans[:-1], chans[1:], strict=True)])
        self.fc = nn.Sequential(
            nn.Linear(2 * chans[-1], 256), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(256, 64), nn.ReLU(inplace=True), nn.Linear(64, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.convs(x)
        return self.fc(torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1))


class LogitAverage(nn.Module):
    """Several trained networks with the same input and output as one: the mean of their
    logits. Used for staging, whose single runs differ by up to 0.1 macro-F1 with the seed
    alone; the average of runs that differ only in their seed is steadier than any one."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an average needs at least one network")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)

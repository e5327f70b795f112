"""SimCLR's two views made as batched tensor operations on uint8 images: nearly free beside the network's step.

:func:`medimg.ssl.views.view_settings` says *what* the views are (lightly's ``SimCLRTransform`` arguments);
:class:`BatchViews` makes them for a whole batch at once, with per-image random parameters, instead of one PIL
round trip per view:

1. **one resampling** for the geometry: a random resized crop (area ``U(min_scale, 1)`` of the image, aspect
   ``exp(U(log 3/4, log 4/3))``, the aspect brought within the image where it does not fit), a rotation by ``U(-rr_degrees, rr_degrees)`` with
   probability ``rr_prob``, and horizontal and vertical flips (``hf_prob``, ``vf_prob``) are composed into one
   affine map per image and applied by ``grid_sample`` (bilinear; outside the image is black, as torchvision's
   rotation fills);
2. colour jitter with probability ``cj_prob``: brightness, contrast (towards the image's mean luma), saturation
   (towards its luma) and hue (a rotation about the grey axis in YIQ space), each factor drawn per image as
   torchvision draws it, applied in that fixed order as one affine colour map per view, clipped to [0, 1] once;
3. grey-scaling with probability ``random_gray_scale`` (ITU-R 601 luma, as torchvision);
4. Gaussian blur with probability ``gaussian_blur``, sigma ``U(*sigmas)`` px per image, a separable kernel of
   radius ``ceil(3 x max sigma)`` with reflected borders;
5. normalisation by the backbone's ``normalize`` mean and std.

Against lightly's PIL pipeline: crop, rotation and flips are one interpolation instead of two (a rotated crop
shows the image around it where lightly's shows black corners), and jitter is applied in a fixed order where
torchvision shuffles it, clipped once where torchvision clips after each of its four parts. Both are recorded (``views: tensor`` in the checkpoint's settings; ``pil`` is lightly's).

Every random number comes from a ``torch.Generator`` seeded by ``(seed, step, rank)`` and drawn in a fixed order
for the ``2 B`` views of a batch, so view ``v`` of the image at position ``i`` of step ``s`` is a function of
(seed, step, position): a resumed, distributed or re-benchmarked run draws the same views. Images in:
``(B, H, W, C)`` uint8 (a torch tensor on any device); views out: two ``(B, C, size, size)`` float32 tensors.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medimg.data.transforms import mix_seed

_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


class BatchViews:
    """Two SimCLR views of every image of a batch (see the module's docstring); ``settings`` is
    :func:`medimg.ssl.views.view_settings`'s dict, ``seed`` the run's."""

    def __init__(self, settings: dict, *, seed: int):
        self.s, self.seed = dict(settings), int(seed)
        self.size = int(settings["input_size"])

    def generator(self, step: int, rank: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(mix_seed(self.seed, int(step), int(rank), 0x5EED))

    def __call__(self, images: torch.Tensor, *, step: int, rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"views are made from (B, H, W, C) uint8 images, not {tuple(images.shape)} {images.dtype}")
        b, channels = len(images), images.shape[-1]
        # grey images copied to three channels (grey_as replicate) are made once and copied back at the end
        replicated = channels == 3 and not self.colour_settings and bool(
            torch.equal(images[..., 0], images[..., 1]) and torch.equal(images[..., 0], images[..., 2]))
        x = (images[..., :1] if replicated else images).permute(0, 3, 1, 2).float().div_(255)  # (B, C, H, W)
        x = torch.cat([x, x])  # view 0 of every image, then view 1
        p = self.parameters(2 * b, self.generator(step, rank))
        p = {k: v.to(x.device) for k, v in p.items()}
        x = self.geometry(x, p)
        x = self.colour(x, p) if x.shape[1] == 3 else self.intensity(x, p)
        x = self.blur(x, p)
        if replicated:
            x = x.expand(-1, 3, -1, -1)
        mean = torch.tensor(self.s["normalize"]["mean"], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.s["normalize"]["std"], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        x = (x - mean) / std
        return x[:b], x[b:]

    @property
    def colour_settings(self) -> bool:
        """Whether the settings touch colour (saturation, hue or grey-scaling): a colour pool's views."""
        return bool(self.s["cj_sat"] or self.s["cj_hue"] or self.s["random_gray_scale"])

    def parameters(self, n: int, g: torch.Generator) -> dict:
        """Every random number of ``n`` views, drawn in a fixed order from ``g`` (one row per view)."""
        s = self.s

        def u(lo, hi):
            return lo + (hi - lo) * torch.rand(n, generator=g)

        def chance(prob):
            return torch.rand(n, generator=g) < prob

        area, log_ratio = u(s["min_scale"], 1.0), u(math.log(3 / 4), math.log(4 / 3))
        cx, cy = torch.rand(n, generator=g), torch.rand(n, generator=g)
        angle = torch.where(chance(s["rr_prob"]), u(-s["rr_degrees"], s["rr_degrees"]), torch.zeros(n))
        hflip, vflip = chance(s["hf_prob"]), chance(s["vf_prob"])
        jitter = chance(s["cj_prob"])
        strength = s.get("cj_strength", 1.0)
        bright, contrast = s["cj_bright"] * strength, s["cj_contrast"] * strength
        sat, hue = s["cj_sat"] * strength, s["cj_hue"] * strength
        factors = dict(brightness=u(max(0.0, 1 - bright), 1 + bright), contrast=u(max(0.0, 1 - contrast), 1 + contrast),
                       saturation=u(max(0.0, 1 - sat), 1 + sat), hue=u(-hue, hue))
        grey = chance(s["random_gray_scale"])
        blur, sigma = chance(s["gaussian_blur"]), u(*s["sigmas"])
        return dict(area=area, log_ratio=log_ratio, cx=cx, cy=cy, angle=angle, hflip=hflip, vflip=vflip,
                    jitter=jitter, grey=grey, blur=blur, sigma=sigma, **factors)

    def geometry(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """Crop, rotation and flips as one affine map per view, sampled once (bilinear) at ``size`` px."""
        ratio, area = p["log_ratio"].exp(), p["area"]
        w, h = (area * ratio).sqrt(), (area / ratio).sqrt()  # crop width and height as shares of the image's
        # a crop wider or taller than the image keeps its area at the nearest aspect that fits (a whole-image crop
        # at area 1, as torchvision's fallback gives it)
        w, h = torch.where(w > 1, 1.0, torch.where(h > 1, area, w)), torch.where(h > 1, 1.0, torch.where(w > 1, area, h))
        cx = (2 * p["cx"] - 1) * (1 - w)  # the crop's centre in grid units ([-1, 1] spans the image)
        cy = (2 * p["cy"] - 1) * (1 - h)
        a = p["angle"] * math.pi / 180
        sx = torch.where(p["hflip"], -w, w)
        sy = torch.where(p["vflip"], -h, h)
        cos, sin = a.cos(), a.sin()
        theta = torch.stack([torch.stack([cos * sx, -sin * sy, cx], 1), torch.stack([sin * sx, cos * sy, cy], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), [len(x), x.shape[1], self.size, self.size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def colour(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """Colour jitter where drawn, then grey-scaling where drawn, as one affine colour map per view.

        Brightness ``b``, contrast ``c`` (towards the mean luma), saturation (towards the luma) and hue are each
        linear in the colour, so together they are ``M x + (1 - c) b mu`` with ``mu`` the view's mean luma
        (saturation and hue keep grey grey); the result is clipped to [0, 1] once, at the end (torchvision clips
        after each of the four, which differs only where an intermediate colour leaves the cube)."""
        n, dev, dt = len(x), x.device, x.dtype
        eye = torch.eye(3, device=dev, dtype=dt).expand(n, 3, 3)
        w = torch.tensor(_LUMA, device=dev, dtype=dt)
        grey = torch.ones(3, 1, device=dev, dtype=dt) @ w.view(1, 3)  # (3, 3): every channel the luma
        b, c, sat = (p[k].to(dt).view(-1, 1, 1) for k in ("brightness", "contrast", "saturation"))
        m = _hue_matrix(p["hue"]).to(dt) @ (sat * eye + (1 - sat) * grey) * (b * c)
        mu = (x.mean((2, 3)) @ w).view(-1, 1, 1, 1)
        offset = (1 - c.view(-1, 1, 1, 1)) * b.view(-1, 1, 1, 1) * mu
        on = p["jitter"].view(-1, 1, 1)
        m = torch.where(on, m, eye)
        offset = torch.where(on.view(-1, 1, 1, 1), offset, torch.zeros_like(offset))
        m = torch.where(p["grey"].view(-1, 1, 1), grey @ m, m)
        return (torch.einsum("nij,njhw->nihw", m, x) + offset).clamp_(0, 1)

    def intensity(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """Brightness and contrast jitter of a grey view where drawn: ``b c x + (1 - c) b mu``, clipped once."""
        b, c = p["brightness"].to(x.dtype).view(-1, 1, 1, 1), p["contrast"].to(x.dtype).view(-1, 1, 1, 1)
        on = p["jitter"].view(-1, 1, 1, 1)
        y = (b * c * x + (1 - c) * b * x.mean((1, 2, 3), keepdim=True)).clamp_(0, 1)
        return torch.where(on, y, x)

    def blur(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """A separable Gaussian blur with each view's own sigma, where drawn."""
        if not bool(p["blur"].any()):
            return x
        n, c, hgt, wid = x.shape
        radius = math.ceil(3 * float(self.s["sigmas"][1]))
        t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-0.5 * (t.view(1, -1) / p["sigma"].view(-1, 1).to(x.dtype)) ** 2)
        k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n * c, 2r + 1)
        y = F.pad(x.reshape(1, n * c, hgt, wid), (radius, radius, radius, radius), mode="reflect")
        y = F.conv2d(y, k.view(n * c, 1, 1, -1), groups=n * c)
        y = F.conv2d(y, k.view(n * c, 1, -1, 1), groups=n * c).view(n, c, hgt, wid)
        return torch.where(p["blur"].view(-1, 1, 1, 1), y, x)


def _hue_matrix(shift: torch.Tensor) -> torch.Tensor:
    """``(n, 3, 3)`` RGB maps turning the hue by ``shift`` (a share of the colour circle, as torchvision's ``hue``
    factor): a rotation of the chroma plane (I, Q) of YIQ by ``2 pi shift``, which keeps grey grey."""
    a = 2 * math.pi * shift.double()
    cos, sin, one, zero = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    rot = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                       torch.stack([zero, sin, cos], 1)], 1)
    to_yiq = _RGB_TO_YIQ.double()
    return (torch.linalg.inv(to_yiq) @ rot @ to_yiq).to(shift.device)

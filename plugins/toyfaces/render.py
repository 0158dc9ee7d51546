"""Drawing a toy face: a head ellipsoid with features placed on its surface, rotated, lit and exposed.

Features are 3-D points on an ellipsoid (the nose tip sticks out), so yaw and pitch move and foreshorten
them as on a real head and the far eye disappears in profile; roll rotates the finished photo. Drawing
is PIL primitives on a canvas supersampled 2-3x and reduced (anti-aliasing), then light, exposure,
noise and blur are applied with numpy. One 56 px face takes well under a millisecond.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .params import GREY_HAIR, Identity, Nuisance

FACE_CENTER = (0.0, 0.06)


def _mix(a, b, t: float) -> tuple[int, int, int]:
    t = min(max(t, 0.0), 1.0)
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(c * factor)))) for c in colour)


class _Head:
    """Projects face-frame points ``(x, y, z)`` (units of the canvas half-width) to pixels."""

    def __init__(self, ident: Identity, nz: Nuisance, canvas: int):
        self.a, self.b = ident.face_w, ident.face_h
        self.c = 0.92 * ident.face_w
        self.yaw, self.pitch = math.radians(nz.yaw), math.radians(nz.pitch)
        self.cy, self.sy = math.cos(self.yaw), math.sin(self.yaw)
        self.cp, self.sp = math.cos(self.pitch), math.sin(self.pitch)
        self.half = canvas / 2 * nz.scale
        self.ox = canvas / 2 + (FACE_CENTER[0] + nz.dx) * canvas / 2
        self.oy = canvas / 2 + (FACE_CENTER[1] + nz.dy) * canvas / 2

    def depth(self, x: float, y: float, bulge: float = 0.0) -> float:
        inside = 1.0 - (x / self.a) ** 2 - (y / self.b) ** 2
        return self.c * math.sqrt(max(inside, 0.02)) + bulge

    def point(self, x: float, y: float, z: float | None = None) -> tuple[float, float, float]:
        """Pixel ``(X, Y)`` and the facing factor (cosine of the surface normal with the view)."""
        if z is None:
            z = self.depth(x, y)
        x1 = x * self.cy + z * self.sy
        z1 = -x * self.sy + z * self.cy
        y2 = y * self.cp - z1 * self.sp
        facing = math.cos(self.yaw + math.asin(max(-1.0, min(1.0, x / self.a))))
        return self.ox + x1 * self.half, self.oy + y2 * self.half, facing

    def size(self, r: float) -> float:
        return r * self.half

    def outline(self, cx: float, cy: float, rx: float, ry: float, z: float = 0.0) -> list[float]:
        """Bounding box of a head-sized ellipse centred at ``(cx, cy)`` with depth offset ``z``."""
        px, py, _ = self.point(cx, cy, z)
        rxp = math.sqrt((rx * self.cy) ** 2 + ((self.c * rx / self.a) * self.sy) ** 2) * self.half
        ryp = ry * (0.85 + 0.15 * self.cp) * self.half
        return [px - rxp, py - ryp, px + rxp, py + ryp]


def _ellipse_points(cx, cy, rx, ry, tilt=0.0, n=12):
    ct, st = math.cos(tilt), math.sin(tilt)
    pts = []
    for k in range(n):
        t = 2 * math.pi * k / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        pts.append((cx + x * ct - y * st, cy + x * st + y * ct))
    return pts


def _ellipse_cut(draw, box, y_cut, fill, keep_above: bool, n: int = 28):
    """Fill the part of the ellipse in ``box`` above (or below) the horizontal line ``y_cut``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    rx, ry = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    s = max(-1.0, min(1.0, (y_cut - cy) / max(ry, 1e-6)))
    if (keep_above and s <= -1.0) or (not keep_above and s >= 1.0):
        return
    # Angles (y down) of the ellipse points on the cut line; sweep the arc on the kept side.
    a = math.asin(s)
    t0, t1 = (math.pi - a, 2 * math.pi + a) if keep_above else (a, math.pi - a)
    pts = [(cx + rx * math.cos(t), cy + ry * math.sin(t)) for t in np.linspace(t0, t1, n)]
    draw.polygon(pts, fill=fill)


def _background(nz: Nuisance, canvas: int) -> Image.Image:
    corners = np.asarray(nz.bg, dtype=np.float64).reshape(2, 2, 3).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(corners, "RGB").resize((canvas, canvas), Image.BILINEAR)
    if nz.clutter:
        rng = np.random.default_rng(nz.clutter_seed)
        draw = ImageDraw.Draw(img)
        for _ in range(nz.clutter):
            x, y = rng.uniform(0, canvas, 2)
            w, h = rng.uniform(0.05, 0.3, 2) * canvas
            colour = tuple(int(v) for v in rng.uniform(30, 220, 3))
            box = [x - w / 2, y - h / 2, x + w / 2, y + h / 2]
            (draw.ellipse if rng.uniform() < 0.5 else draw.rectangle)(box, fill=colour)
    return img


def render_face(ident: Identity, nz: Nuisance, size: int = 112) -> np.ndarray:
    """One toy photo as an RGB ``uint8`` (size, size, 3) array."""
    ss = 3 if size <= 64 else 2
    canvas = size * ss
    img = _background(nz, canvas)
    draw = ImageDraw.Draw(img)
    head = _Head(ident, nz, canvas)
    age = nz.age
    skin = _mix(ident.skin, (150, 140, 135), 0.15 * age)
    grey = 0.75 * min(max((age - 0.5) / 0.45, 0.0), 1.0)
    hair = _mix(ident.hair, GREY_HAIR, grey)
    brow_colour = _shade(_mix(ident.hair, GREY_HAIR, grey * 0.7), 0.75)
    a, b = ident.face_w, ident.face_h
    line = max(1, int(round(canvas * 0.008)))

    # Clothes and neck.
    rng = np.random.default_rng(nz.clutter_seed + 1)
    shirt = tuple(int(v) for v in rng.uniform(20, 230, 3))
    nx, ny, _ = head.point(0, b * 0.9, 0)
    draw.ellipse([nx - 0.9 * head.half, ny + 0.25 * head.half, nx + 0.9 * head.half, ny + 1.2 * head.half], fill=shirt)
    draw.rectangle([nx - head.size(a * 0.45), ny - head.size(0.2), nx + head.size(a * 0.45), ny + head.size(0.35)],
                   fill=_shade(skin, 0.85))

    # Hair behind the head, then the ears.
    hair_box = head.outline(-0.06 * head.sy, -0.06, a * ident.hair_volume, b * ident.hair_volume * 0.92, 0)
    if ident.hair_style == 3:
        lx, ly, _ = head.point(-0.08 * head.sy, 0.25, 0)
        draw.ellipse([lx - head.size(a * 1.2), ly - head.size(b * 1.0), lx + head.size(a * 1.2),
                      ly + head.size(b * 0.95)], fill=_shade(hair, 0.9))
    if ident.hair_style != 0:
        draw.ellipse(hair_box, fill=hair)
    for side in (-1, 1):
        ex, ey, facing = head.point(side * a * 0.97, ident.eye_y + 0.06, 0.0)
        visible = -side * head.sy < 0.55
        if visible:
            rw, rh = head.size(ident.ear * (0.35 + 0.65 * abs(head.sy))), head.size(ident.ear * 1.5)
            draw.ellipse([ex - rw, ey - rh, ex + rw, ey + rh], fill=_shade(skin, 0.9))

    # Face: forehead/cheek ellipse and jaw ellipse.
    upper = head.outline(0, -0.06, a, b * 0.82)
    jaw_c = 0.16
    lower = head.outline(0, jaw_c, a * ident.jaw_w, b * 0.72 * ident.chin, z=0.25 * head.c)
    draw.ellipse(upper, fill=skin)
    draw.ellipse(lower, fill=skin)
    _, mouth_py, _ = head.point(0, ident.mouth_y)
    if nz.stubble > 0:
        _ellipse_cut(draw, lower, mouth_py - head.size(0.06), _mix(skin, hair, 0.3 * nz.stubble), keep_above=False)
    if nz.beard > 0:
        # A full beard is bushier than the jaw: it hides the jaw line and chin, as a real one does.
        grow_x = (lower[2] - lower[0]) * 0.12 * nz.beard
        grow_y = (lower[3] - lower[1]) * 0.16 * nz.beard
        bushy = [lower[0] - grow_x, lower[1], lower[2] + grow_x, lower[3] + grow_y]
        _ellipse_cut(draw, bushy, mouth_py - head.size(0.09 * nz.beard),
                     _mix(skin, _shade(hair, 0.8), 0.5 + 0.5 * nz.beard), keep_above=False)

    # Age: forehead lines and nasolabial folds.
    if age > 0.35:
        crease = _shade(skin, 1.0 - 0.35 * age)
        width = max(1, int(round(line * (0.5 + age))))
        for k in range(1 + int(age * 3)):
            y = ident.eye_y - ident.brow_gap - 0.08 - 0.05 * k
            pts = [head.point(x, y)[:2] for x in (-0.2, -0.07, 0.07, 0.2)]
            draw.line(pts, fill=crease, width=width)
        if age > 0.5:
            for side in (-1, 1):
                p0 = head.point(side * (ident.nose_w + 0.03), ident.eye_y + ident.nose_len)
                p1 = head.point(side * (ident.mouth_w * 0.6 + 0.02), ident.mouth_y + 0.03)
                if min(p0[2], p1[2]) > 0.2:
                    draw.line([p0[:2], p1[:2]], fill=crease, width=width)

    # Eyes and brows.
    for side in (-1, 1):
        ex, ey, facing = head.point(side * ident.eye_dx, ident.eye_y)
        if facing < 0.18:
            continue
        rw = head.size(ident.eye_w) * facing
        rh = head.size(ident.eye_w * ident.eye_h) * (1.0 - 0.55 * nz.squint) * head.cp
        tilt = -side * ident.eye_tilt
        draw.polygon(_ellipse_points(ex, ey, rw, rh, tilt), fill=(238, 236, 230))
        ir = min(head.size(ident.eye_w * 0.42), rh * 1.05)
        ix = ex + 0.25 * rw * head.sy
        draw.ellipse([ix - ir * facing, ey - ir, ix + ir * facing, ey + ir], fill=tuple(int(c) for c in ident.iris))
        pr = ir * 0.45
        draw.ellipse([ix - pr * facing, ey - pr, ix + pr * facing, ey + pr], fill=(15, 12, 12))
        upper_lid = _ellipse_points(ex, ey, rw, rh, tilt, n=12)[6:] + [_ellipse_points(ex, ey, rw, rh, tilt, n=12)[0]]
        draw.line(upper_lid, fill=(40, 30, 28), width=line)
        by = ident.eye_y - ident.brow_gap - 0.04 * nz.brow_raise
        inner = (side * (ident.eye_dx - ident.brow_len * 0.55), by + 0.01)
        outer = (side * (ident.eye_dx + ident.brow_len * 0.55), by + ident.brow_angle * ident.brow_len)
        t = ident.brow_thick
        quad = [inner, outer, (outer[0], outer[1] + t * 0.6), (inner[0], inner[1] + t)]
        pts = [head.point(x, y) for x, y in quad]
        if min(p[2] for p in pts) > 0.05:
            draw.polygon([p[:2] for p in pts], fill=brow_colour)

    # Nose: bridge-to-wings triangle, shaded on the side away from the light, with nostrils.
    tip_y = ident.eye_y + ident.nose_len
    top = head.point(0, ident.eye_y + 0.02, head.depth(0, ident.eye_y) + 0.02)
    tip = head.point(0, tip_y, head.depth(0, tip_y) + 0.06 + 0.5 * ident.nose_len * ident.nose_w / 0.1 * 0.4)
    wings = [head.point(s * ident.nose_w, tip_y + 0.01, head.depth(s * ident.nose_w, tip_y) + 0.02) for s in (-1, 1)]
    shadow_side = 0 if math.cos(nz.light_angle) > 0 else 1
    draw.polygon([top[:2], wings[shadow_side][:2], tip[:2]], fill=_shade(skin, 0.82))
    draw.polygon([top[:2], wings[1 - shadow_side][:2], tip[:2]], fill=_shade(skin, 0.95))
    draw.line([wings[0][:2], tip[:2], wings[1][:2]], fill=_shade(skin, 0.7), width=line)
    for w in wings:
        if w[2] > 0.2:
            r = head.size(ident.nose_w * 0.28)
            nxp = (w[0] + tip[0]) / 2
            draw.ellipse([nxp - r * w[2], w[1] - r * 0.6, nxp + r * w[2], w[1] + r * 0.6], fill=_shade(skin, 0.45))

    # Mouth: corners lifted by the smile, lips around an optional dark opening.
    lip_colour = _mix(_shade(skin, 0.8), (185, 60, 70), ident.lip_red)
    corners = [head.point(s * ident.mouth_w / 2, ident.mouth_y - 0.035 * nz.smile) for s in (-1, 1)]
    mid_top = head.point(0, ident.mouth_y - ident.lip * 0.8, head.depth(0, ident.mouth_y) + 0.02)
    opening = 0.05 * nz.mouth_open
    mid_bot = head.point(0, ident.mouth_y + ident.lip + opening + 0.02 * max(nz.smile, 0),
                         head.depth(0, ident.mouth_y) + 0.02)
    centre = head.point(0, ident.mouth_y + opening / 2 + 0.015 * max(nz.smile, 0))
    if min(c[2] for c in corners) > -0.2:
        if opening > 0.005:
            draw.polygon([corners[0][:2], mid_top[:2], corners[1][:2], mid_bot[:2]], fill=(60, 20, 25))
            draw.polygon([corners[0][:2], mid_top[:2], corners[1][:2], centre[:2]], fill=lip_colour)
            low = head.point(0, ident.mouth_y + opening, head.depth(0, ident.mouth_y) + 0.02)
            draw.polygon([corners[0][:2], low[:2], corners[1][:2], mid_bot[:2]], fill=lip_colour)
        else:
            draw.polygon([corners[0][:2], mid_top[:2], corners[1][:2], mid_bot[:2]], fill=lip_colour)
            draw.line([corners[0][:2], centre[:2], corners[1][:2]], fill=_shade(lip_colour, 0.55), width=line)
    if nz.moustache > 0:
        m_y = ident.mouth_y - ident.lip - 0.02
        pts = [head.point(x, y) for x, y in ((-ident.mouth_w * 0.7, m_y + 0.04), (0, m_y - 0.05 * nz.moustache),
                                               (ident.mouth_w * 0.7, m_y + 0.04), (0, m_y + 0.02))]
        draw.polygon([p[:2] for p in pts], fill=_shade(hair, 0.85))

    # Hair in front: everything of the hair cap above the hairline (which recedes with age).
    if ident.hair_style in (1, 2, 4):
        recede = 0.12 * max(age - 0.5, 0) if ident.hair_style != 2 else 0.0
        fringe = 0.12 if ident.hair_style == 2 else 0.0
        _, cut, _ = head.point(0, ident.eye_y - ident.brow_gap - ident.hairline * 0.55 - recede + fringe, 0)
        _ellipse_cut(draw, hair_box, cut, hair, keep_above=True)
        if ident.hair_style == 4:
            p = [head.point(x, y, 0)[:2] for x, y in ((-0.05, -b), (0.35, -b * 0.6), (0.45, -0.35), (0.0, -b * 0.75))]
            draw.polygon(p, fill=_shade(hair, 1.15))

    img = img.reduce(ss)
    if abs(nz.roll) > 0.01:  # rotating the reduced photo costs a ninth of rotating the canvas
        img = img.rotate(nz.roll, resample=Image.BILINEAR, center=(head.ox / ss, head.oy / ss),
                         fillcolor=tuple(int(c) for c in nz.bg[:3]))
    return _photograph(np.asarray(img, dtype=np.float32), nz, size)


def face_landmarks(ident: Identity, nz: Nuisance, size: int = 112) -> np.ndarray:
    """The five points of the photo :func:`render_face` draws, (5, 2) float pixel coordinates in the
    ArcFace order (image-left eye, image-right eye, nose tip, image-left and image-right mouth corner):
    the same projection of the head, reduced and rolled as the photo is. A point turned away from the
    camera (the far eye in profile) is where it would be, as a landmark detector's estimate is."""
    ss = 3 if size <= 64 else 2
    head = _Head(ident, nz, size * ss)
    tip_y = ident.eye_y + ident.nose_len
    tip_z = head.depth(0, tip_y) + 0.06 + 0.5 * ident.nose_len * ident.nose_w / 0.1 * 0.4
    points = [head.point(s * ident.eye_dx, ident.eye_y) for s in (-1, 1)]
    points.append(head.point(0, tip_y, tip_z))
    points += [head.point(s * ident.mouth_w / 2, ident.mouth_y - 0.035 * nz.smile) for s in (-1, 1)]
    xy = np.array([p[:2] for p in points], dtype=np.float64) / ss
    if abs(nz.roll) > 0.01:  # PIL's rotate turns the photo counter-clockwise on screen (y down)
        centre = np.array([head.ox, head.oy]) / ss
        t = math.radians(nz.roll)
        rot = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
        xy = (xy - centre) @ rot.T + centre
    return xy


_NOISE_BANK: dict[int, np.ndarray] = {}


def _noise_field(size: int, seed: int) -> np.ndarray:
    """Unit Gaussian noise for one photo: a fixed bank of fields, shifted and flipped per seed.

    Drawing 3 x size^2 normals per photo was a third of the rendering time; 8 fields x 4 flips x
    size^2 shifts give ample variety for sensor noise and stay deterministic.
    """
    if size not in _NOISE_BANK:
        _NOISE_BANK[size] = np.random.default_rng(size).standard_normal((8, size, size, 3), np.float32)
    bank = _NOISE_BANK[size]
    field = bank[seed % 8]
    field = np.roll(field, ((seed >> 3) % size, (seed >> 11) % size), axis=(0, 1))
    if (seed >> 19) & 1:
        field = field[::-1]
    if (seed >> 20) & 1:
        field = field[:, ::-1]
    return field


def _photograph(pixels: np.ndarray, nz: Nuisance, size: int) -> np.ndarray:
    """Directional light and exposure gain, sensor noise, then gamma (clipping) and blur."""
    gain = np.float32(nz.gain)
    if nz.light > 0:
        ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        field = (1.0 + nz.light * (math.cos(nz.light_angle) * ramp[None, :] + math.sin(nz.light_angle) * ramp[:, None]))
        pixels = pixels * (field * gain)[:, :, None]
    elif gain != 1:
        pixels = pixels * gain
    if nz.noise > 0:
        pixels = pixels + np.float32(nz.noise) * _noise_field(size, nz.noise_seed)
    out = np.clip(pixels + 0.5, 0, 255).astype(np.uint8)
    if nz.gamma != 1.0:
        lut = np.round(255.0 * (np.arange(256) / 255.0) ** nz.gamma).astype(np.uint8)
        out = lut[out]
    img = Image.fromarray(out, "RGB")
    radius = nz.blur * size / 112
    if radius > 0.15:
        img = img.filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(img)

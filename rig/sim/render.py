"""Numba kernels that ray-cast the 2.5-D driving world (see `rig.sim.scene` for what it holds).

The world is made of analytic pieces so that one ray costs a few planes and a handful of boxes:
the ground plane (road, sidewalks, terrain, lane markings, crosswalks), up to three layers of
vertical facades per street side (buildings, vegetation, walls, see-through fences) whose blocks
are looked up by position along the road, an optional tunnel, the sky, and objects (axis-aligned
boxes and camera-facing billboards) binned into 16x16-pixel tiles so a pixel only tests the few
objects that can cover it. Textures are analytic stripes filtered over the pixel footprint and a
tileable noise texture whose contrast fades with the footprint, so distant detail does not alias
into spurious events.

World frame: x right, y down, z forward along the road; the ground is y = 0. Rays come in the
camera frame with z = 1, so a hit's ray parameter is the camera z-depth.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from rig.sim.parallel import row_stride

TILE = 16
MAX_PER_TILE = 48
INF = np.inf

# ---- indices into the float parameter vector `prm` (filled by rig.sim.scene) ----
(SKY_AMB, SUN_E, SUN_X, SUN_Y, SUN_Z, NIGHT, AMB_NIGHT, LAMP_I, LAMP_SPACING, LAMP_Z0, LAMP_H,
 LAMP_XR, LAMP_XL, HEAD_I, HEAD_OX, HEAD_OY, HEAD_OZ, HEAD_DX, HEAD_DY, HEAD_DZ,
 ZEN_R, ZEN_G, ZEN_B, HOR_R, HOR_G, HOR_B, SUN_RAD, SUN_COS, GLOW,
 TUN_ON, TUN_Z0, TUN_Z1, TUN_XL, TUN_XR, TUN_H, TUN_E, WIN_LIT_E, TAIL_RAD, HEADL_RAD, TL_RAD,
 LAMPHEAD_RAD, ROAD_L, ROAD_R, SW_L, SW_R, TERR_L, TERR_R, PERIOD, CROSS_PERIOD, PIX_ANGLE,
 T_NOW, SHADOWS, CLOUDS, N_PRM) = range(54)

# ---- object columns ----
# float columns of `obj_f`
(OX0, OY0, OZ0, OX1, OY1, OZ1, OVX, OVZ, OAMP, OOMEGA, OPHASE, OR, OG, OB, OPARAM, N_OBJ_F) = range(16)
# int columns of `obj_i`
(OKIND, OCLS, OSUB, OINST, OEMIT, N_OBJ_I) = range(6)
KIND_BOX, KIND_BILLBOARD = 0, 1
(SUB_PLAIN, SUB_CAR_BODY, SUB_CAR_CABIN, SUB_BUS, SUB_TRUCK, SUB_POLE, SUB_LAMP, SUB_PERSON,
 SUB_CYCLIST, SUB_CROWN, SUB_SIGN, SUB_TLIGHT, SUB_MOTO) = range(13)
EMIT_NONE, EMIT_TAIL, EMIT_HEAD = 0, 1, 2

# ---- facade blocks ----
(BH, BR, BG, BB, BWIN_P, BWIN_W, BFLOOR_H, BWIN_H, BLIT_P, BZ0, N_BLK_F) = range(11)
(BTYPE, BCLS, BSEED, N_BLK_I) = range(4)
BT_BUILDING, BT_VEG, BT_WALL, BT_FENCE = 0, 1, 2, 3

# hit kinds
H_SKY, H_GROUND, H_FACADE, H_TUNNEL_WALL, H_TUNNEL_CEIL, H_OBJ = range(6)

_jit = nb.njit(cache=True, fastmath=True, error_model="numpy")
_kernel = nb.njit(cache=True, fastmath=True, error_model="numpy", parallel=True, nogil=True)
_serial = nb.njit(cache=True, fastmath=True, error_model="numpy")


@_jit
def _hash01(a: int, b: int, c: int) -> float:
    """A cheap deterministic hash of three ints to [0, 1)."""
    h = (a * 73856093) ^ (b * 19349663) ^ (c * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF) / 16777216.0


@_jit
def _tex(noise: np.ndarray, u: float, v: float) -> float:
    """Bilinear lookup of the tileable noise texture (texel units, wraps)."""
    n = noise.shape[0]
    fu = math.floor(u)
    fv = math.floor(v)
    au = u - fu
    av = v - fv
    iu = int(fu) & (n - 1)
    iv = int(fv) & (n - 1)
    iu1 = (iu + 1) & (n - 1)
    iv1 = (iv + 1) & (n - 1)
    a = noise[iv, iu] + (noise[iv, iu1] - noise[iv, iu]) * au
    b = noise[iv1, iu] + (noise[iv1, iu1] - noise[iv1, iu]) * au
    return a + (b - a) * av


@_jit
def _noise(noise: np.ndarray, u_m: float, v_m: float, feature_m: float, footprint_m: float) -> float:
    """Noise with features of `feature_m`, faded where the pixel footprint is larger (prefilter)."""
    r = footprint_m / feature_m
    fade = 1.0 / (1.0 + r * r * 4.0)
    if fade < 0.02:
        return 0.0
    s = 8.0 / feature_m  # 8 texels per feature
    return fade * _tex(noise, u_m * s, v_m * s)


@_jit
def _pulse_int(x: float, period: float, duty_len: float) -> float:
    """Antiderivative of the periodic pulse that is 1 on [0, duty_len) of each period."""
    k = math.floor(x / period)
    r = x - k * period
    return k * duty_len + min(r, duty_len)


@_jit
def _pulse(x: float, period: float, duty_len: float, width: float) -> float:
    """Coverage of the periodic pulse over a box filter of `width` centred on x."""
    if width < 1e-6:
        r = x - math.floor(x / period) * period
        return 1.0 if r < duty_len else 0.0
    if width > 4.0 * period:
        return duty_len / period
    return (_pulse_int(x + 0.5 * width, period, duty_len)
            - _pulse_int(x - 0.5 * width, period, duty_len)) / width


@_jit
def _band(x: float, lo: float, hi: float, width: float) -> float:
    """Coverage of the interval [lo, hi) over a box filter of `width` centred on x."""
    if width < 1e-6:
        return 1.0 if lo <= x < hi else 0.0
    a = max(x - 0.5 * width, lo)
    b = min(x + 0.5 * width, hi)
    return max(0.0, b - a) / width


@_jit
def _smoothstep(e0: float, e1: float, x: float) -> float:
    t = min(1.0, max(0.0, (x - e0) / (e1 - e0)))
    return t * t * (3.0 - 2.0 * t)


@_jit
def _sky(prm: np.ndarray, noise: np.ndarray, dxn: float, dyn: float, dzn: float,
         cx: float, cy: float, cz: float) -> tuple[float, float, float]:
    """Sky radiance in the unit direction (dxn, dyn, dzn)."""
    elev = -dyn
    h = math.sqrt(min(1.0, max(0.0, elev)))
    r = prm[HOR_R] + (prm[ZEN_R] - prm[HOR_R]) * h
    g = prm[HOR_G] + (prm[ZEN_G] - prm[HOR_G]) * h
    b = prm[HOR_B] + (prm[ZEN_B] - prm[HOR_B]) * h
    if prm[CLOUDS] > 0.0 and elev > 0.02:
        t = 800.0 / elev
        c = _tex(noise, (cx + t * dxn) * 0.004, (cz + t * dzn) * 0.004)
        c = max(0.0, c * 1.6 - 0.2) * prm[CLOUDS] * min(1.0, elev * 6.0)
        lum = 0.6 * (prm[HOR_R] + prm[HOR_G] + prm[HOR_B])
        r += (lum - r) * c
        g += (lum - g) * c
        b += (lum * 1.02 - b) * c
    if prm[SUN_E] > 0.0:
        cosang = dxn * prm[SUN_X] + dyn * prm[SUN_Y] + dzn * prm[SUN_Z]
        if cosang > prm[SUN_COS]:
            return prm[SUN_RAD], prm[SUN_RAD] * 0.97, prm[SUN_RAD] * 0.9
        glow = prm[GLOW] * math.exp((cosang - 1.0) * 60.0) + 0.3 * prm[GLOW] * math.exp(
            (cosang - 1.0) * 6.0)
        r += glow
        g += glow * 0.93
        b += glow * 0.8
    return r, g, b


@_jit
def _in_tunnel(prm: np.ndarray, x: float, z: float) -> bool:
    return (prm[TUN_ON] > 0.0 and prm[TUN_Z0] <= z <= prm[TUN_Z1]
            and prm[TUN_XL] <= x <= prm[TUN_XR])


@_jit
def _sun_shadow(prm: np.ndarray, blk_cell: np.ndarray, blk_f: np.ndarray, plane_x: np.ndarray,
                px: float, py: float, pz: float) -> float:
    """1 if the point sees the sun past the street's facades, 0 if a facade blocks it."""
    sx = prm[SUN_X]
    if abs(sx) < 1e-6:
        return 1.0
    side = 1 if sx > 0.0 else 0
    ncell = blk_cell.shape[1]
    for layer in range(2):
        xp = plane_x[side, layer]
        u = (xp - px) / sx
        if u <= 0.0:
            continue
        zz = pz + u * prm[SUN_Z]
        yy = py + u * prm[SUN_Y]
        cell = int(math.floor(zz)) & (ncell - 1)
        b = blk_cell[side * 3 + layer, cell]
        if b >= 0 and yy >= -blk_f[b, BH]:
            return 0.0
    return 1.0


@_jit
def _irradiance(prm: np.ndarray, blk_cell: np.ndarray, blk_f: np.ndarray, plane_x: np.ndarray,
                px: float, py: float, pz: float, nx: float, ny: float, nz: float,
                is_ground: bool) -> float:
    """Irradiance (grey) at a surface point with normal n: sky, sun, street lamps, headlights,
    tunnel lamps."""
    inside = _in_tunnel(prm, px, pz) and py > -prm[TUN_H] - 0.01
    e = 0.0
    up = -ny  # y is down
    if prm[SKY_AMB] > 0.0:
        amb = prm[SKY_AMB] * (0.55 + 0.45 * up)
        if inside:
            # daylight leaks in near the portals
            d = min(pz - prm[TUN_Z0], prm[TUN_Z1] - pz)
            amb *= math.exp(-max(d, 0.0) / 12.0)
        e += amb
        if prm[SUN_E] > 0.0 and not inside:
            cs = nx * prm[SUN_X] + ny * prm[SUN_Y] + nz * prm[SUN_Z]
            if cs > 0.0:
                sh = 1.0
                if prm[SHADOWS] > 0.0:
                    sh = _sun_shadow(prm, blk_cell, blk_f, plane_x, px, py, pz)
                e += prm[SUN_E] * cs * sh
    if prm[NIGHT] > 0.0:
        e += prm[AMB_NIGHT] * (0.6 + 0.4 * up)
        # street lamps: the two nearest per side
        sp = prm[LAMP_SPACING]
        for side in range(2):
            lx = prm[LAMP_XR] if side == 1 else prm[LAMP_XL]
            z0 = prm[LAMP_Z0] + (0.5 * sp if side == 0 else 0.0)
            k = math.floor((pz - z0) / sp)
            for j in range(2):
                lz = z0 + (k + j) * sp
                vx = lx - px
                vy = -prm[LAMP_H] - py
                vz = lz - pz
                r2 = vx * vx + vy * vy + vz * vz + 0.05
                inv = 1.0 / math.sqrt(r2)
                cs = (vx * nx + vy * ny + vz * nz) * inv
                if cs > 0.0:
                    # lamps point down: intensity falls towards the horizon
                    down = -vy * inv
                    e += prm[LAMP_I] * cs * (0.25 + 0.75 * down) / r2
        # ego headlights
        vx = px - prm[HEAD_OX]
        vy = py - prm[HEAD_OY]
        vz = pz - prm[HEAD_OZ]
        r2 = vx * vx + vy * vy + vz * vz + 0.1
        inv = 1.0 / math.sqrt(r2)
        cspot = (vx * prm[HEAD_DX] + vy * prm[HEAD_DY] + vz * prm[HEAD_DZ]) * inv
        if cspot > 0.88:
            cs = -(vx * nx + vy * ny + vz * nz) * inv
            if cs > 0.0:
                e += prm[HEAD_I] * _smoothstep(0.88, 0.985, cspot) * cs / r2
    if inside:
        e += prm[TUN_E] * (0.7 + 0.3 * up)
    return e


@_jit
def _silhouette(sub: int, cls: int, u: float, v: float, w: float, h: float, anim: float,
                param: float) -> int:
    """Class at (u, v) in [0, 1]^2 of a billboard of w x h metres (v = 0 at the top), -1 = miss."""
    X = (u - 0.5) * w
    Y = v * h
    if sub == SUB_PERSON or sub == SUB_CYCLIST or sub == SUB_MOTO:
        rider = sub != SUB_PERSON
        top = 0.0
        # head
        hy = top + 0.12
        if X * X + (Y - hy) * (Y - hy) < 0.11 * 0.11:
            return cls if not rider else 12
        body_cls = cls if not rider else 12
        if rider:
            # vehicle below the rider: a narrow wheel and handlebar seen end-on
            if Y > 0.95 * h * 0.58 + 0.4:
                pass
            veh = 18 if sub == SUB_CYCLIST else 17
            wheel_w = 0.04 if sub == SUB_CYCLIST else 0.09
            if Y >= h - 0.7 and abs(X) < wheel_w:
                return veh
            if abs(Y - (h - 0.78)) < 0.04 and abs(X) < 0.3:
                return veh
            if sub == SUB_MOTO and Y >= h - 0.95 and abs(X) < 0.22 and Y < h - 0.45:
                return veh
            # rider torso and legs
            if 0.23 <= Y < 0.8 and abs(X) < 0.2 - 0.05 * (Y - 0.23):
                return body_cls
            if 0.8 <= Y < h - 0.35 and abs(abs(X) - 0.12) < 0.06:
                return body_cls
            if 0.25 <= Y < 0.75 and abs(abs(X) - 0.24 - 0.08 * (Y - 0.25)) < 0.04:
                return body_cls
            return -1
        swing = 0.06 * math.sin(anim)
        if 0.23 <= Y < 0.9 and abs(X) < 0.21 - 0.04 * (Y - 0.23):
            return body_cls
        if 0.25 <= Y < 0.85:
            ax = abs(X) - 0.25
            if abs(ax + swing * (1.0 if X > 0 else -1.0) * (Y - 0.25)) < 0.045:
                return body_cls
        if 0.9 <= Y < h:
            s = swing * (Y - 0.9) * 1.5
            if abs(X - 0.09 - s) < 0.07 or abs(X + 0.09 + s) < 0.07:
                return body_cls
        return -1
    if sub == SUB_CROWN:
        dx = (u - 0.5) * 2.0
        dy = (v - 0.5) * 2.0
        ang = math.atan2(dy, dx)
        rr = 0.82 + 0.1 * math.sin(ang * 5.0 + param * 7.0) + 0.06 * math.sin(ang * 11.0 + param)
        return cls if dx * dx + dy * dy < rr * rr else -1
    if sub == SUB_SIGN:
        shape = int(param * 3.0) % 3
        if shape == 0:  # round
            return cls if (u - 0.5) ** 2 + (v - 0.5) ** 2 < 0.25 else -1
        if shape == 1:  # triangle, point up
            return cls if abs(u - 0.5) < 0.5 * v else -1
        return cls
    return cls


@_jit
def _shade_object(prm: np.ndarray, noise: np.ndarray, obj_f: np.ndarray, obj_i: np.ndarray,
                  o: int, box: np.ndarray, vi: int, face: int, px: float, py: float, pz: float,
                  hit_cls: int, footprint: float) -> tuple:
    """Albedo (rgb), emission (rgb) and normal of object `o` at a hit point.

    face: 0..5 = -x, +x, -y, +y, -z, +z faces of a box; 6 = billboard (normal -z).
    """
    sub = obj_i[o, OSUB]
    x0 = box[vi, 0]
    y0 = box[vi, 1]
    z0 = box[vi, 2]
    x1 = box[vi, 3]
    y1 = box[vi, 4]
    z1 = box[vi, 5]
    ar = obj_f[o, OR]
    ag = obj_f[o, OG]
    ab = obj_f[o, OB]
    er = 0.0
    eg = 0.0
    eb = 0.0
    nx = 0.0
    ny = 0.0
    nz = -1.0
    if face == 0:
        nx, nz = -1.0, 0.0
    elif face == 1:
        nx, nz = 1.0, 0.0
    elif face == 2:
        ny, nz = -1.0, 0.0
    elif face == 3:
        ny, nz = 1.0, 0.0
    elif face == 5:
        nz = 1.0
    u = (px - x0) / max(x1 - x0, 1e-6)
    v = (py - y0) / max(y1 - y0, 1e-6)
    w_along = (pz - z0) / max(z1 - z0, 1e-6)
    night = prm[NIGHT] > 0.0
    if sub == SUB_CAR_BODY or sub == SUB_BUS or sub == SUB_TRUCK:
        if v > 0.82:  # bumper / wheel shadow band
            ar, ag, ab = 0.03, 0.03, 0.03
        if face == 4 or face == 5:
            emit = obj_i[o, OEMIT]
            lamp = (0.05 < u < 0.2 or 0.8 < u < 0.95) and 0.25 < v < 0.45
            if emit != EMIT_NONE and lamp:
                if emit == EMIT_TAIL:
                    k = prm[TAIL_RAD]
                    er, eg, eb = k, 0.06 * k, 0.03 * k
                    ar, ag, ab = 0.3, 0.02, 0.02
                else:
                    k = prm[HEADL_RAD]
                    er, eg, eb = k, 0.95 * k, 0.85 * k
                    ar, ag, ab = 0.6, 0.6, 0.6
            elif 0.4 < u < 0.6 and 0.5 < v < 0.65:
                ar, ag, ab = 0.7, 0.7, 0.65  # licence plate
        if sub == SUB_BUS and 0.15 < v < 0.5 and face != 2 and face != 3:
            ar, ag, ab = 0.04, 0.05, 0.06
            er = eg = eb = 0.05 * prm[SKY_AMB]
            if night:
                er, eg, eb = 0.02, 0.02, 0.018
    elif sub == SUB_CAR_CABIN:
        if face != 2:
            pillar = u < 0.08 or u > 0.92 if (face == 4 or face == 5) else (
                w_along < 0.08 or w_along > 0.92)
            if not pillar and v > 0.12:
                ar, ag, ab = 0.03, 0.035, 0.04
                er = eg = eb = 0.06 * prm[SKY_AMB]
    elif sub == SUB_POLE:
        n = _noise(noise, px + pz, py, 0.5, footprint)
        ar *= 1.0 + 0.2 * n
        ag *= 1.0 + 0.2 * n
        ab *= 1.0 + 0.2 * n
    elif sub == SUB_LAMP:
        if night:
            k = prm[LAMPHEAD_RAD]
            er, eg, eb = k, 0.85 * k, 0.6 * k
    elif sub == SUB_PERSON or sub == SUB_CYCLIST or sub == SUB_MOTO:
        Y = v * (y1 - y0)
        if Y < 0.23:
            ar, ag, ab = 0.45, 0.32, 0.24  # head
        elif hit_cls == 18 or hit_cls == 17:
            ar, ag, ab = 0.08, 0.08, 0.09
        elif Y > 0.9:
            ar, ag, ab = ar * 0.4, ag * 0.4, ab * 0.5  # trousers
    elif sub == SUB_CROWN:
        n = _noise(noise, px * 1.3 + pz, py * 1.3, 0.25, footprint)
        n2 = _noise(noise, px * 0.7 + 11.0, py * 0.7 + pz, 1.2, footprint)
        k = max(0.15, 1.0 + 0.6 * n + 0.3 * n2)
        ar *= k
        ag *= k
        ab *= k
    elif sub == SUB_SIGN:
        shape = int(obj_f[o, OPARAM] * 3.0) % 3
        d2 = (u - 0.5) ** 2 + (v - 0.5) ** 2
        if shape == 0:
            if d2 > 0.16:
                ar, ag, ab = 0.7, 0.05, 0.05
            else:
                ar, ag, ab = 0.8, 0.8, 0.8
        elif shape == 1:
            if abs(u - 0.5) > 0.5 * v - 0.12 or v > 0.85:
                ar, ag, ab = 0.7, 0.05, 0.05
            else:
                ar, ag, ab = 0.85, 0.8, 0.6
        else:
            if u < 0.08 or u > 0.92 or v < 0.08 or v > 0.92:
                ar, ag, ab = 0.8, 0.8, 0.8
            else:
                ar, ag, ab = 0.05, 0.2, 0.6
    elif sub == SUB_TLIGHT:
        ar, ag, ab = 0.03, 0.03, 0.03
        for lamp in range(3):
            cy_l = 0.18 + 0.32 * lamp
            if (u - 0.5) ** 2 * 0.3 + (v - cy_l) ** 2 < 0.012:
                cyc = (prm[T_NOW] + obj_f[o, OPARAM] * 20.0) % 20.0
                active = 2 if cyc < 9.0 else (1 if cyc < 12.0 else 0)
                if lamp == 0:
                    cr, cg, cb = 1.0, 0.08, 0.03
                elif lamp == 1:
                    cr, cg, cb = 1.0, 0.6, 0.05
                else:
                    cr, cg, cb = 0.1, 1.0, 0.5
                if lamp == active:
                    k = prm[TL_RAD]
                    er, eg, eb = k * cr, k * cg, k * cb
                ar, ag, ab = 0.06 * cr, 0.06 * cg, 0.06 * cb
    return ar, ag, ab, er, eg, eb, nx, ny, nz


@_serial
def bin_objects(prm: np.ndarray, obj_f: np.ndarray, obj_i: np.ndarray, R: np.ndarray,
                C: np.ndarray, t_s: float, tile_bounds: np.ndarray, far_m: float,
                vbox: np.ndarray, vidx: np.ndarray, tile_cnt: np.ndarray,
                tile_list: np.ndarray) -> int:
    """Place the objects at time t, cull them to the view, and list per tile those that may cover
    it (tile_bounds: (T, 4) min/max of ray x and y over each tile). Returns the visible count."""
    n = obj_f.shape[0]
    period = prm[PERIOD]
    nv = 0
    tile_cnt[:] = 0
    nt = tile_bounds.shape[0]
    for o in range(n):
        zs = obj_f[o, OVZ] * t_s + obj_f[o, OAMP] * math.sin(obj_f[o, OOMEGA] * t_s + obj_f[o, OPHASE])
        xs = obj_f[o, OVX] * t_s
        bx0 = obj_f[o, OX0] + xs
        bx1 = obj_f[o, OX1] + xs
        bz0 = obj_f[o, OZ0] + zs
        bz1 = obj_f[o, OZ1] + zs
        zc = 0.5 * (bz0 + bz1)
        if period > 0.0:
            shift = period * math.floor((zc - C[2]) / period + 0.5)
            bz0 -= shift
            bz1 -= shift
        by0 = obj_f[o, OY0]
        by1 = obj_f[o, OY1]
        # corners to camera frame
        xmin = INF
        xmax = -INF
        ymin = INF
        ymax = -INF
        zmin = INF
        zmax = -INF
        behind = False
        for c in range(8):
            wx = bx1 if (c & 1) else bx0
            wy = by1 if (c & 2) else by0
            wz = bz1 if (c & 4) else bz0
            dx = wx - C[0]
            dy = wy - C[1]
            dz = wz - C[2]
            qx = R[0, 0] * dx + R[1, 0] * dy + R[2, 0] * dz
            qy = R[0, 1] * dx + R[1, 1] * dy + R[2, 1] * dz
            qz = R[0, 2] * dx + R[1, 2] * dy + R[2, 2] * dz
            zmin = min(zmin, qz)
            zmax = max(zmax, qz)
            if qz < 0.05:
                behind = True
            else:
                xmin = min(xmin, qx / qz)
                xmax = max(xmax, qx / qz)
                ymin = min(ymin, qy / qz)
                ymax = max(ymax, qy / qz)
        if zmax < 0.05 or zmin > far_m:
            continue
        if behind:
            xmin, xmax, ymin, ymax = -INF, INF, -INF, INF
        elif max(xmax - xmin, ymax - ymin) < 0.7 * prm[PIX_ANGLE]:
            continue  # smaller than a pixel: it would only alias
        if nv >= vbox.shape[0]:
            break
        vbox[nv, 0] = bx0
        vbox[nv, 1] = by0
        vbox[nv, 2] = bz0
        vbox[nv, 3] = bx1
        vbox[nv, 4] = by1
        vbox[nv, 5] = bz1
        vbox[nv, 6] = xmin  # the ray-space box: a pixel outside it skips the exact test
        vbox[nv, 7] = xmax
        vbox[nv, 8] = ymin
        vbox[nv, 9] = ymax
        vidx[nv] = o
        any_tile = False
        for ti in range(nt):
            if (tile_bounds[ti, 1] >= xmin and tile_bounds[ti, 0] <= xmax
                    and tile_bounds[ti, 3] >= ymin and tile_bounds[ti, 2] <= ymax):
                k = tile_cnt[ti]
                if k < tile_list.shape[1]:
                    tile_list[ti, k] = nv
                    tile_cnt[ti] = k + 1
                    any_tile = True
        if any_tile:
            nv += 1
    return nv


@_kernel
def render_kernel(rays: np.ndarray, R: np.ndarray, C: np.ndarray, prm: np.ndarray,
                  noise: np.ndarray, plane_x: np.ndarray, blk_cell: np.ndarray, blk_f: np.ndarray,
                  blk_i: np.ndarray, obj_f: np.ndarray, obj_i: np.ndarray, vbox: np.ndarray,
                  vidx: np.ndarray, tile_cnt: np.ndarray, tile_list: np.ndarray, ntx: int,
                  tile_mask: np.ndarray,
                  luminance_only: bool, want_labels: bool, labels_only: bool, out_rgb: np.ndarray,
                  out_lum: np.ndarray, out_label: np.ndarray, out_depth: np.ndarray,
                  out_inst: np.ndarray) -> None:
    """Ray-cast every pixel: radiance (or luminance) and optionally label, depth, instance;
    with `labels_only` no shading at all (ground truth, motion estimates)."""
    H = rays.shape[0]
    W = rays.shape[1]
    cx = C[0]
    cy = C[1]
    cz = C[2]
    ncell = blk_cell.shape[1]
    pix = prm[PIX_ANGLE]
    stride = row_stride(H)  # balanced rows per thread (rig.sim.parallel)
    for j in nb.prange(H):
        yy = (j * stride) % H
        trow = (yy // TILE) * ntx
        for xx in range(W):
            if tile_mask[trow + xx // TILE] == 0:
                continue  # this tile is not due for a new sample
            rx = rays[yy, xx, 0]
            ry = rays[yy, xx, 1]
            dx = R[0, 0] * rx + R[0, 1] * ry + R[0, 2]
            dy = R[1, 0] * rx + R[1, 1] * ry + R[1, 2]
            dz = R[2, 0] * rx + R[2, 1] * ry + R[2, 2]
            inv_len = 1.0 / math.sqrt(dx * dx + dy * dy + dz * dz)
            t_best = INF
            kind = H_SKY
            side = 1 if dx > 0.0 else 0
            blk = -1
            obj = -1
            vobj = -1
            face = 0
            hit_cls = 0
            # ground
            if dy > 1e-9:
                t_best = -cy / dy
                kind = H_GROUND
            # tunnel walls and ceiling
            if prm[TUN_ON] > 0.0:
                if dy < -1e-9:
                    tc = (-prm[TUN_H] - cy) / dy
                    if 0.0 < tc < t_best:
                        zc = cz + tc * dz
                        xc = cx + tc * dx
                        if prm[TUN_Z0] <= zc <= prm[TUN_Z1] and prm[TUN_XL] <= xc <= prm[TUN_XR]:
                            t_best = tc
                            kind = H_TUNNEL_CEIL
                if abs(dx) > 1e-9:
                    xw = prm[TUN_XR] if dx > 0.0 else prm[TUN_XL]
                    tw = (xw - cx) / dx
                    if 0.0 < tw < t_best:
                        zw = cz + tw * dz
                        yw = cy + tw * dy
                        if prm[TUN_Z0] <= zw <= prm[TUN_Z1] and yw >= -prm[TUN_H]:
                            t_best = tw
                            kind = H_TUNNEL_WALL
            # facade layers, near to far
            if abs(dx) > 1e-9:
                for layer in range(3):
                    xp = plane_x[side, layer]
                    tp = (xp - cx) / dx
                    if tp <= 0.0:
                        continue
                    if tp >= t_best:
                        break
                    zp = cz + tp * dz
                    yp = cy + tp * dy
                    cell = int(math.floor(zp)) & (ncell - 1)
                    b = blk_cell[side * 3 + layer, cell]
                    if b < 0:
                        continue
                    top = blk_f[b, BH]
                    btype = blk_i[b, BTYPE]
                    if btype == BT_VEG:
                        top += 0.9 * _tex(noise, zp * 2.0, 3.0 + b)
                    if yp < -top:
                        continue
                    if btype == BT_FENCE:
                        fp = (tp / inv_len) * pix / max(abs(dx) * inv_len, 0.05)
                        cov = _pulse(zp, 0.14, 0.035, fp)
                        rail = yp < -top + 0.06 or yp > -0.12
                        if not rail and fp < 0.07 and cov < 0.5:
                            continue
                    t_best = tp
                    kind = H_FACADE
                    blk = b
                    break
            # objects of this pixel's tile
            ti = trow + xx // TILE
            nobj = tile_cnt[ti]
            if nobj > 0:
                idx = 0.0
                idy = 0.0
                idz = 0.0
                have_inv = False
                for k in range(nobj):
                    vi = tile_list[ti, k]
                    if rx < vbox[vi, 6] or rx > vbox[vi, 7] or ry < vbox[vi, 8] or ry > vbox[vi, 9]:
                        continue
                    if not have_inv:
                        idx = 1.0 / dx if abs(dx) > 1e-12 else 1e12
                        idy = 1.0 / dy if abs(dy) > 1e-12 else 1e12
                        idz = 1.0 / dz if abs(dz) > 1e-12 else 1e12
                        have_inv = True
                    o = vidx[vi]
                    if obj_i[o, OKIND] == KIND_BOX:
                        ta = (vbox[vi, 0] - cx) * idx
                        tb = (vbox[vi, 3] - cx) * idx
                        fx = 0
                        if ta > tb:
                            ta, tb = tb, ta
                            fx = 1
                        tc0 = (vbox[vi, 1] - cy) * idy
                        tc1 = (vbox[vi, 4] - cy) * idy
                        fy = 2
                        if tc0 > tc1:
                            tc0, tc1 = tc1, tc0
                            fy = 3
                        td0 = (vbox[vi, 2] - cz) * idz
                        td1 = (vbox[vi, 5] - cz) * idz
                        fz = 4
                        if td0 > td1:
                            td0, td1 = td1, td0
                            fz = 5
                        tn = ta
                        f = fx
                        if tc0 > tn:
                            tn = tc0
                            f = fy
                        if td0 > tn:
                            tn = td0
                            f = fz
                        tf = min(tb, min(tc1, td1))
                        if tn <= tf and tn > 0.0 and tn < t_best:
                            t_best = tn
                            kind = H_OBJ
                            obj = o
                            vobj = vi
                            face = f
                            hit_cls = obj_i[o, OCLS]
                    else:
                        tz = (vbox[vi, 2] - cz) * idz
                        if tz > 0.0 and tz < t_best:
                            hx = cx + tz * dx
                            hy = cy + tz * dy
                            x0 = vbox[vi, 0]
                            x1 = vbox[vi, 3]
                            y0 = vbox[vi, 1]
                            y1 = vbox[vi, 4]
                            if x0 <= hx <= x1 and y0 <= hy <= y1:
                                anim = obj_f[o, OOMEGA] * prm[T_NOW] * 2.3 + obj_f[o, OPHASE]
                                c = _silhouette(obj_i[o, OSUB], obj_i[o, OCLS], (hx - x0) / (x1 - x0),
                                                (hy - y0) / (y1 - y0), x1 - x0, y1 - y0, anim,
                                                obj_f[o, OPARAM])
                                if c >= 0:
                                    t_best = tz
                                    kind = H_OBJ
                                    obj = o
                                    vobj = vi
                                    face = 6
                                    hit_cls = c
            if labels_only:
                label = 10
                inst = 0
                if kind == H_GROUND:
                    px = cx + t_best * dx
                    pz = cz + t_best * dz
                    if prm[ROAD_L] <= px < prm[ROAD_R] or _in_tunnel(prm, px, pz):
                        label = 0
                    elif prm[SW_L] <= px < prm[SW_R]:
                        label = 1
                    else:
                        label = 9
                elif kind == H_FACADE:
                    label = blk_i[blk, BCLS]
                elif kind == H_TUNNEL_WALL or kind == H_TUNNEL_CEIL:
                    label = 255
                elif kind == H_OBJ:
                    label = hit_cls
                    if hit_cls >= 11:
                        inst = obj_i[obj, OINST]
                out_label[yy, xx] = label
                out_depth[yy, xx] = t_best
                out_inst[yy, xx] = inst
                continue
            # ---- shading ----
            r = 0.0
            g = 0.0
            b_ = 0.0
            label = 255
            inst = 0
            if kind == H_SKY:
                r, g, b_ = _sky(prm, noise, dx * inv_len, dy * inv_len, dz * inv_len, cx, cy, cz)
                label = 10
            else:
                px = cx + t_best * dx
                py = cy + t_best * dy
                pz = cz + t_best * dz
                dist = t_best / inv_len
                er = 0.0
                eg = 0.0
                eb = 0.0
                nx = 0.0
                ny = -1.0
                nz = 0.0
                if kind == H_GROUND:
                    cosi = max(dy * inv_len, 0.02)
                    fp_x = dist * pix  # lateral footprint (m)
                    fp_z = dist * pix / cosi  # along-road footprint (m)
                    ax = abs(px)
                    n_f = _noise(noise, px, pz, 0.15, fp_x)
                    n_c = _noise(noise, px * 0.5 + 40.0, pz * 0.5, 2.0, fp_x)
                    if prm[ROAD_L] <= px < prm[ROAD_R] or _in_tunnel(prm, px, pz):
                        a = 0.085 * (1.0 + 0.15 * n_f + 0.2 * n_c)
                        # lane markings: dashed centre line, solid edges
                        m = _band(px, -0.075, 0.075, fp_x) * _pulse(pz, 12.0, 4.0, fp_z)
                        m += _band(px, prm[ROAD_L] + 0.15, prm[ROAD_L] + 0.3, fp_x)
                        m += _band(px, 3.425, 3.575, fp_x)
                        # crosswalks
                        cp = prm[CROSS_PERIOD]
                        if cp > 0.0:
                            zz = pz - cp * math.floor(pz / cp)
                            if zz < 4.5 and px < 3.5:
                                m += _band(zz, 0.5, 4.0, fp_z) * _pulse(px + 10.0, 1.0, 0.5, fp_x)
                        m = min(m, 1.0)
                        a = a + (0.6 - a) * m
                        ar = a
                        ag = a
                        ab = a * 1.03
                        label = 0
                    elif prm[SW_L] <= px < prm[SW_R]:
                        edge = prm[ROAD_R] if px > 0.0 else prm[ROAD_L]
                        a = 0.26 * (1.0 + 0.15 * n_f + 0.15 * n_c)
                        joint = _pulse(px + 0.01, 0.6, 0.02, fp_x) + _pulse(pz + 0.01, 0.6, 0.02, fp_z)
                        a *= 1.0 - 0.45 * min(joint, 1.0)
                        curb = _band(abs(px - edge), 0.0, 0.25, fp_x)
                        a = a + (0.36 - a) * curb
                        ar = a
                        ag = a * 0.98
                        ab = a * 0.95
                        label = 1
                    else:
                        a = 1.0 + 0.45 * n_f + 0.35 * n_c
                        ar = 0.07 * a
                        ag = 0.12 * a
                        ab = 0.04 * a
                        label = 9
                        if ax > prm[TERR_R]:
                            label = 9
                elif kind == H_FACADE:
                    nx = -1.0 if side == 1 else 1.0
                    ny = 0.0
                    btype = blk_i[blk, BTYPE]
                    label = blk_i[blk, BCLS]
                    ar = blk_f[blk, BR]
                    ag = blk_f[blk, BG]
                    ab = blk_f[blk, BB]
                    cosi = max(abs(dx) * inv_len, 0.03)
                    fp_v = dist * pix
                    fp_h = dist * pix / cosi
                    h = -py
                    uz = pz - blk_f[blk, BZ0]
                    if btype == BT_BUILDING:
                        wp = blk_f[blk, BWIN_P]
                        fh = blk_f[blk, BFLOOR_H]
                        wu = _pulse(uz - 0.5 * (wp - blk_f[blk, BWIN_W]), wp, blk_f[blk, BWIN_W], fp_h)
                        wv = _pulse(h - 1.0, fh, blk_f[blk, BWIN_H], fp_v) * _band(
                            h, 1.0, blk_f[blk, BH] - 0.8, fp_v)
                        win = wu * wv
                        n = _noise(noise, uz, h, 0.4, fp_h)
                        k = 1.0 + 0.12 * n
                        ar = ar * k * (1.0 - win) + 0.04 * win
                        ag = ag * k * (1.0 - win) + 0.045 * win
                        ab = ab * k * (1.0 - win) + 0.05 * win
                        er = eg = eb = 0.12 * prm[SKY_AMB] * win
                        if prm[NIGHT] > 0.0 and win > 0.0:
                            fi = int(math.floor((h - 1.0) / fh))
                            wi = int(math.floor(uz / wp))
                            if _hash01(blk_i[blk, BSEED], fi, wi) < blk_f[blk, BLIT_P]:
                                e = prm[WIN_LIT_E] * win
                                er, eg, eb = e, 0.8 * e, 0.55 * e
                    elif btype == BT_VEG:
                        n = _noise(noise, uz * 1.2, h * 1.2, 0.3, fp_h)
                        n2 = _noise(noise, uz * 0.5 + 7.0, h * 0.5, 1.5, fp_h)
                        k = max(0.1, 1.0 + 0.6 * n + 0.3 * n2)
                        ar *= k
                        ag *= k
                        ab *= k
                    elif btype == BT_WALL:
                        n = _noise(noise, uz, h, 0.5, fp_h)
                        seam = _pulse(uz, 2.5, 0.03, fp_h)
                        k = (1.0 + 0.15 * n) * (1.0 - 0.5 * seam)
                        ar *= k
                        ag *= k
                        ab *= k
                    else:  # fence: bars (behind-the-bars coverage blended when far)
                        cov = _pulse(pz, 0.14, 0.035, fp_h)
                        rail = h > blk_f[blk, BH] - 0.06 or h < 0.12
                        if not rail and fp_h >= 0.07:
                            k = 0.35 + 0.65 * cov
                            ar *= k
                            ag *= k
                            ab *= k
                elif kind == H_TUNNEL_WALL or kind == H_TUNNEL_CEIL:
                    label = 255  # Cityscapes "tunnel" is not a train class
                    n = _noise(noise, pz, px + py, 0.6, dist * pix)
                    a = 0.3 * (1.0 + 0.1 * n)
                    ar = a
                    ag = a * 0.97
                    ab = a * 0.9
                    if kind == H_TUNNEL_CEIL:
                        nx = 0.0
                        ny = 1.0
                        cl = 0.5 * (prm[TUN_XL] + prm[TUN_XR])
                        lamp = _band(px, cl - 0.25, cl + 0.25, dist * pix) * _pulse(
                            pz, 6.0, 3.0, dist * pix / max(abs(dy) * inv_len, 0.03))
                        e = 3.0 * lamp
                        er, eg, eb = e, e * 0.95, e * 0.8
                    else:
                        nx = -1.0 if dx > 0.0 else 1.0
                        ny = 0.0
                        # reflective marker panels at 1 m
                        mk = _band(-py, 0.9, 1.1, dist * pix) * _pulse(
                            pz, 20.0, 1.0, dist * pix / max(abs(dx) * inv_len, 0.03))
                        ar = ar + (0.8 - ar) * mk
                        ag = ag + (0.8 - ag) * mk
                        ab = ab + (0.8 - ab) * mk
                else:  # object
                    label = hit_cls
                    if hit_cls >= 11:
                        inst = obj_i[obj, OINST]
                    ar, ag, ab, er, eg, eb, nx, ny, nz = _shade_object(
                        prm, noise, obj_f, obj_i, obj, vbox, vobj, face, px, py, pz, hit_cls,
                        dist * pix)
                e = _irradiance(prm, blk_cell, blk_f, plane_x, px, py, pz, nx, ny, nz,
                                kind == H_GROUND)
                r = ar * e + er
                g = ag * e + eg
                b_ = ab * e + eb
            if luminance_only:
                out_lum[yy, xx] = 0.2126 * r + 0.7152 * g + 0.0722 * b_
            else:
                out_rgb[yy, xx, 0] = r
                out_rgb[yy, xx, 1] = g
                out_rgb[yy, xx, 2] = b_
            if want_labels:
                out_label[yy, xx] = label
                out_depth[yy, xx] = t_best
                out_inst[yy, xx] = inst


@_serial
def tile_ray_bounds(rays: np.ndarray, ntx: int, nty: int) -> np.ndarray:
    """(T, 4): min x, max x, min y, max y of the rays of each 16x16 tile (row-major tiles)."""
    H = rays.shape[0]
    W = rays.shape[1]
    out = np.empty((ntx * nty, 4))
    for ty in range(nty):
        for tx in range(ntx):
            x0 = INF
            x1 = -INF
            y0 = INF
            y1 = -INF
            for yy in range(ty * TILE, min(H, ty * TILE + TILE)):
                for xx in range(tx * TILE, min(W, tx * TILE + TILE)):
                    x0 = min(x0, rays[yy, xx, 0])
                    x1 = max(x1, rays[yy, xx, 0])
                    y0 = min(y0, rays[yy, xx, 1])
                    y1 = max(y1, rays[yy, xx, 1])
            i = ty * ntx + tx
            out[i, 0] = x0
            out[i, 1] = x1
            out[i, 2] = y0
            out[i, 3] = y1
    return out

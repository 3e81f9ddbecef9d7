"""Counter-based random numbers for the numba kernels.

Why not `np.random` inside the kernels: parallel numba loops draw from per-thread generators, so
the numbers a pixel gets would depend on the thread schedule. Here every draw is a pure function
of (seed, stream, pixel, counter), hashed with SplitMix64, so the simulation is bit-identical
whatever the number of threads.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2^-53


@nb.njit(cache=True)
def mix64(z: np.uint64) -> np.uint64:
    """SplitMix64 finaliser: a bijective 64-bit hash with good avalanche."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@nb.njit(cache=True)
def key3(seed: np.uint64, a: np.int64, b: np.int64) -> np.uint64:
    """A hash key from a seed and two counters (e.g. pixel index and event number)."""
    z = mix64(seed + np.uint64(a) * _GOLDEN)
    return mix64(z + np.uint64(b) * _GOLDEN + np.uint64(1))


@nb.njit(cache=True)
def uniform(key: np.uint64, k: np.int64) -> float:
    """The k-th uniform number in [0, 1) of the stream `key`."""
    return float(mix64(key + np.uint64(k) * _GOLDEN) >> _S11) * _INV53


@nb.njit(cache=True)
def normal(key: np.uint64, k: np.int64) -> float:
    """A standard normal number (Box-Muller on two uniforms of the stream)."""
    u1 = uniform(key, 2 * k) + 1e-300
    u2 = uniform(key, 2 * k + 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)


@nb.njit(cache=True)
def normal_fast(key: np.uint64, k: np.int64) -> float:
    """An approximately standard normal number from one hash (Irwin-Hall sum of four 16-bit
    uniforms, tails cut at 3.5 sigma): a third of the cost of Box-Muller, for sensor noise."""
    h = mix64(key + np.uint64(k) * _GOLDEN)
    m = np.uint64(0xFFFF)
    s = (float(h & m) + float((h >> np.uint64(16)) & m) + float((h >> np.uint64(32)) & m)
         + float(h >> np.uint64(48))) * (1.0 / 65536.0)
    return (s - 2.0) * 1.7320508075688772


@nb.njit(cache=True)
def exponential(key: np.uint64, k: np.int64) -> float:
    """An Exp(1) number."""
    return -math.log(1.0 - uniform(key, k) + 1e-300)


@nb.njit(cache=True)
def poisson(key: np.uint64, lam: float) -> float:
    """A Poisson(lam) count: exact (inversion) below 30, Gaussian-rounded above."""
    if lam <= 0.0:
        return 0.0
    if lam < 30.0:
        u = uniform(key, 0)
        p = math.exp(-lam)
        c = p
        n = 0
        while u > c and n < 200:
            n += 1
            p *= lam / n
            c += p
        return float(n)
    v = lam + math.sqrt(lam) * normal(key, 1)
    return max(0.0, math.floor(v + 0.5))


def seed_u64(*parts: int) -> np.uint64:
    """Fold integers into one 64-bit seed (deterministic, order-sensitive)."""
    z = 0x2545F4914F6CDD1D
    for p in parts:
        z = (z ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3 & 0xFFFFFFFFFFFFFFFF
        z ^= z >> 29
    return np.uint64(z)

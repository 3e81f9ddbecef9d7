"""Numba kernels of the EVT2 codec (32-bit words), as Prophesee Gen3 cameras write them.

Word layout (Prophesee "EVT 2.0 format", OpenEB `evt2_event_types.h`), type in bits 31..28:
  0x0 CD_OFF / 0x1 CD_ON  [27:22] time bits 5..0, [21:11] x, [10:0] y
  0x8 EVT_TIME_HIGH       [27:0] time bits 33..6
  0xA EXT_TRIGGER         [27:22] time bits 5..0, [12:8] channel, [0] edge
  0xE OTHERS, 0xF CONTINUED (vendor data, skipped)
A time loop (OpenEB) is counted when a TIME_HIGH falls back by at least MaxTimestamp - 10000 us.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rig.evt.evt3_kernels import _likely, _unlikely, put_at

MAX_TIMESTAMP = ((1 << 28) - 1) << 6
LOOP_THRESHOLD = 10000
TIME_LOOP = MAX_TIMESTAMP + (1 << 6)

D_BASE_SET = 0
D_BASE_TIME = 1  # TIME_HIGH << 6 plus the loop shift
D_SHIFT = 2  # loops * TIME_LOOP
D_LAST_T = 3
D_WORD_BASE = 4
D_N_ANOM = 5
D_SKIPPED = 6
D_NSTATE = 8


def new_decoder_state() -> np.ndarray:
    st = np.zeros(D_NSTATE, np.int64)
    st[D_LAST_T] = -1
    return st


@njit(cache=True)
def count_bounds(words):
    """Upper bounds of (events, triggers) in `words` (branch-free: LLVM vectorises it)."""
    ne = np.int64(0)
    nt = np.int64(0)
    for k in range(words.shape[0]):
        typ = np.int64(words[k]) >> 28
        ne += np.int64(typ <= 1)
        nt += np.int64(typ == 10)
    return ne, nt


#: Words per block of the two decode passes (their scratch stays in the L1 cache).
_BLOCK = 2048
#: The bits just above the x and y fields of a record (see `decode_words`).
OUTSIDE = (1 << 11) | (1 << 27)

#: Spare event records the caller gives `decode_words` past one record per word: each record
#: store spills 3 bytes (and the record's time bits) into the next record.
EVENT_SLACK = 2


@njit(cache=True, inline="always")
def _anomaly(kind, k, st, anom_counts, anom_off, anom_kind):
    anom_counts[kind] += 1
    a = st[D_N_ANOM]
    if a < anom_off.shape[0]:
        anom_off[a] = st[D_WORD_BASE] + k
        anom_kind[a] = kind
        st[D_N_ANOM] = a + 1


@njit(cache=True, inline="never")
def _time_high(w, base, shift):
    """(new base, new loop shift, whether time went backwards) for an EVT_TIME_HIGH word.

    A function of its own (called ~1 in 170 words) so its constants do not take registers in
    the CD loop.
    """
    new_th = ((w & 0x0FFFFFFF) << 6) + shift
    if new_th < base and base - new_th >= MAX_TIMESTAMP - LOOP_THRESHOLD:
        return new_th + TIME_LOOP, shift + TIME_LOOP, False
    return new_th, shift, new_th < base


@njit(cache=True)
def decode_words(
    words, st, width, height,
    out, ne0,
    tr_t, tr_id, tr_v, nt0,
    word_counts, anom_counts, anom_off, anom_kind,
):  # fmt: skip
    """Decode EVT2 `words` from positions (ne0, nt0); return (ne, nt, words used).

    `out` is the uint8 view of an EVENT_DTYPE array. A word adds at most one event, so only the
    words that fit in `out` (less EVENT_SLACK records) are decoded, and decoding stops at a
    trigger with no slot left; the state then resumes from the first unused word.
    """
    ne = ne0
    nt = nt0
    base_set = st[D_BASE_SET]
    base = st[D_BASE_TIME]
    shift = st[D_SHIFT]
    last_t = st[D_LAST_T]
    nt_cap = tr_t.shape[0]
    used = min(words.shape[0], max(0, out.shape[0] // 13 - EVENT_SLACK - ne0))
    k = 0
    if base_set == 0:  # skip to the first TIME_HIGH
        while k < used and (np.int64(words[k]) >> 28) != 8:
            word_counts[np.int64(words[k]) >> 28] += 1
            k += 1
        st[D_SKIPPED] += k
        if k < used:
            base_set = 1
            base = (np.int64(words[k]) & 0x0FFFFFFF) << 6
            word_counts[8] += 1
            k += 1
    # CD words are not counted one by one: every other type is, so they are what is left, and
    # the CD_ON words are counted after the loop, in a branch-free pass.
    k_main = k
    counted_before = word_counts.sum()
    n_on = np.int64(0)
    o = ne * 13
    # x and y are 11-bit fields of the record (x at bit 0, y at bit 16): adding this pushes a
    # coordinate past the geometry into the bit above its field (OUTSIDE), one add for both
    spill = max(0, 2048 - width) | (max(0, 2048 - height) << 16)
    pre = np.empty(_BLOCK, np.int64)
    full = False
    while k < used and not full:
        # pass 1, branch-free (LLVM vectorises it): each word's record bits x | y << 16 |
        # p << 32, its time bits 5..0 at bit 40 (spare bits, see put_at) and bit 63 set unless
        # it is a CD word inside the geometry
        k0 = k
        kb = min(used, k + _BLOCK)
        for i in range(k0, kb):
            w = np.int64(words[np.uint64(i)])
            xyp = ((w >> 11) & 0x7FF) | ((w & 0x7FF) << 16) | ((w & 0x10000000) << 4)
            other = (((xyp + spill) & OUTSIDE) != 0) | ((w >> 29) != 0)
            pre[i - k0] = xyp | (((w >> 22) & 0x3F) << 40) | (np.int64(other) << 63)
        # pass 2: the time, the records, and every other word
        while k < kb:
            v = pre[np.uint64(k - k0)]
            if _likely(v >= 0):  # a CD word inside the geometry
                t = base + ((v >> 40) & 0x3F)
                if _unlikely(t < last_t):
                    _anomaly(2, k, st, anom_counts, anom_off, anom_kind)
                last_t = t
                put_at(out, o, t, v)
                o += 13
                k += 1
                continue
            w = np.int64(words[np.uint64(k)])
            typ = w >> 28
            if typ <= 1:  # a CD word outside the geometry
                t = base + ((w >> 22) & 0x3F)
                if t < last_t:
                    _anomaly(2, k, st, anom_counts, anom_off, anom_kind)
                last_t = t
                _anomaly(0, k, st, anom_counts, anom_off, anom_kind)
                k += 1
                continue
            word_counts[typ] += 1
            if typ == 8:
                base, shift, backwards = _time_high(w, base, shift)
                if backwards:
                    _anomaly(1, k, st, anom_counts, anom_off, anom_kind)
            elif typ == 10:
                if nt >= nt_cap:  # trigger output full: the caller grows it and resumes here
                    word_counts[typ] -= 1
                    full = True
                    break
                t = base + ((w >> 22) & 0x3F)
                last_t = t
                tr_t[nt] = t
                tr_id[nt] = (w >> 8) & 0x1F
                tr_v[nt] = w & 1
                nt += 1
            elif typ != 14 and typ != 15:
                _anomaly(6, k, st, anom_counts, anom_off, anom_kind)
            k += 1
    ne = o // 13
    for i in range(k_main, k):  # branch-free: vectorised
        n_on += np.int64((np.int64(words[i]) >> 28) == 1)
    n_cd = (k - k_main) - (word_counts.sum() - counted_before)
    word_counts[1] += n_on
    word_counts[0] += n_cd - n_on
    used = k
    st[D_BASE_SET] = base_set
    st[D_BASE_TIME] = base
    st[D_SHIFT] = shift
    st[D_LAST_T] = last_t
    st[D_WORD_BASE] += used
    return ne, nt, used


@njit(cache=True)
def encode_words(ev_t, ev_x, ev_y, ev_p, tr_t, tr_id, tr_v, out):
    """EVT2 words for time-sorted events and triggers (a TIME_HIGH whenever bits 33..6 change).

    Used to make test files; times must be below 2^34 us.
    """
    ne = ev_t.shape[0]
    nt = tr_t.shape[0]
    i = 0
    j = 0
    n = 0
    high = np.int64(-1)
    while i < ne or j < nt:
        is_trig = j < nt and (i >= ne or tr_t[j] <= ev_t[i])
        t = tr_t[j] if is_trig else ev_t[i]
        h = t >> 6
        if h != high:
            out[n] = (np.int64(8) << 28) | (h & 0x0FFFFFFF)
            n += 1
            high = h
        if is_trig:
            out[n] = (
                (np.int64(10) << 28)
                | ((t & 0x3F) << 22)
                | ((np.int64(tr_id[j]) & 0x1F) << 8)
                | (np.int64(tr_v[j]) & 1)
            )
            j += 1
        else:
            out[n] = (
                ((np.int64(ev_p[i]) & 1) << 28)
                | ((t & 0x3F) << 22)
                | ((np.int64(ev_x[i]) & 0x7FF) << 11)
                | (np.int64(ev_y[i]) & 0x7FF)
            )
            i += 1
        n += 1
    return n

"""Numba kernels of the EVT 2.1 codec (64-bit vectorised words), as IMX636 and GenX320 write them.

Word layout (Prophesee "EVT 2.1 format" docs; OpenEB `hal/cpp/include/metavision/hal/decoders/
evt21/evt21_event_types.h`, `Evt21Raw`), the type in bits 63..60:
  0x0 EVT_NEG / 0x1 EVT_POS  [59:54] time bits 5..0, [53:43] x, [42:32] y,
                             [31:0] valid mask: bit k set = an event at pixel (x + k, y)
  0x8 EVT_TIME_HIGH          [59:32] time bits 33..6
  0xA EXT_TRIGGER            [59:54] time bits 5..0, [44:40] channel id, [32] value (1 = rising)
  0xE OTHERS                 [59:54] time bits 5..0, [47:32] subtype, [31:0] payload
                             (subtype 0x0014 / 0x0016: ERC input / output CD count, payload 21..0)
  0xF CONTINUED (vendor data, skipped); every other type is reserved.
Time (OpenEB `EVT21GenericDecoder`): t = loops * 2^34 + TIME_HIGH << 6 + the word's 6 low bits. A
loop is counted only when a TIME_HIGH falls back by the whole range (at least (2^28 - 1) << 6, so
from the last value to 0), unlike EVT2's 10 ms threshold; a smaller fall is kept as is and counted.

Byte order in the file: the word as one little-endian uint64 ("little", OpenEB's `EVT21Decoder`;
GenX320 and current writers). The "legacy" variant (`EVT21LegacyDecoder`: `endianness=legacy`, the
IMX636 on Prophesee's TZ boards / EVK4 with EVT 2.1) stores the same word as two little-endian 32-bit
halves, bits 63..32 first: its first half is laid out like an EVT2 word, its second is the mask.
The kernels take `legacy` and rotate each word by 32 bits (branch-free) before decoding it.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

from rig.evt.evt3_kernels import _likely, _popcount, put_at

MAX_TIMESTAMP = ((1 << 28) - 1) << 6
TIME_LOOP = 1 << 34
ERC_INPUT = 0x0014
ERC_OUTPUT = 0x0016

# Decoder state slots (int64 array carried between chunks): the same indices as EVT2's.
D_BASE_SET = 0
D_BASE_TIME = 1  # TIME_HIGH << 6 plus the loop shift
D_SHIFT = 2  # loops * TIME_LOOP
D_LAST_T = 3
D_WORD_BASE = 4
D_N_ANOM = 5
D_SKIPPED = 6
D_NSTATE = 8

#: Spare event records the caller gives `decode_words` past the bound of the events it keeps: a
#: CD word writes up to 32 records from the current position, and each record store spills 3
#: bytes into the next record.
EVENT_SLACK = 33


def new_decoder_state() -> np.ndarray:
    """A fresh EVT 2.1 decoder state."""
    st = np.zeros(D_NSTATE, np.int64)
    st[D_LAST_T] = -1
    return st


@njit(cache=True, inline="always")
def _word(words, k, rot):
    """Word k as int64 in the "little" layout: `rot` 32 swaps the halves of a legacy word."""
    w = np.int64(words[np.uint64(k)])
    return (w << rot) | ((w >> rot) & 0xFFFFFFFF)


@njit(cache=True)
def count_bounds(words, legacy):
    """Upper bounds of (events, triggers) in `words`: the set mask bits of the CD words (exact
    before the geometry) and the trigger words. Branch-free so LLVM vectorises it."""
    rot = np.int64(32) if legacy else np.int64(0)
    ne = np.int64(0)
    nt = np.int64(0)
    for k in range(words.shape[0]):
        w = _word(words, k, rot)
        typ = (w >> 60) & 0xF
        ne += _popcount((w & 0xFFFFFFFF) if typ <= 1 else np.int64(0))
        nt += np.int64(typ == 10)
    return ne, nt


@njit(cache=True, inline="always")
def _anomaly(kind, k, st, anom_counts, anom_off, anom_kind, amount):
    anom_counts[kind] += amount
    a = st[D_N_ANOM]
    if a < anom_off.shape[0]:
        anom_off[a] = st[D_WORD_BASE] + k
        anom_kind[a] = kind
        st[D_N_ANOM] = a + 1


@njit(cache=True, inline="never")
def _time_high(w, base, shift):
    """(new base, new loop shift, whether time went backwards) for an EVT_TIME_HIGH word.

    OpenEB's rule: a loop only when the new TIME_HIGH is below the last by the whole range.
    """
    new_high = ((w >> 32) & 0x0FFFFFFF) << 6
    last_high = base - shift
    if new_high < last_high:
        if last_high - new_high >= MAX_TIMESTAMP:
            return new_high + shift + TIME_LOOP, shift + TIME_LOOP, False
        return new_high + shift, shift, True
    return new_high + shift, shift, False


@njit(cache=True)
def decode_words(
    words, st, width, height, legacy,
    out, ne0,
    tr_t, tr_id, tr_v, nt0,
    erc_sums, word_counts, anom_counts, anom_off, anom_kind,
):  # fmt: skip
    """Decode EVT 2.1 `words` (uint64) from positions (ne0, nt0); return (ne, nt, words used).

    Events come out in word order, and within a word by increasing x. Words before the first
    TIME_HIGH are skipped (as OpenEB does); mask bits outside the geometry are dropped and counted
    (one count per event). `out` is the uint8 view of an EVENT_DTYPE array; decoding stops early
    (fewer words used) when fewer than EVENT_SLACK records are left past the position or a trigger
    finds no slot, and the state then resumes from the first unused word. ERC counters are summed
    into `erc_sums` (input records, input events, output records, output events).
    """
    rot = np.int64(32) if legacy else np.int64(0)
    o = ne0 * 13
    nt = nt0
    base_set = st[D_BASE_SET]
    base = st[D_BASE_TIME]
    shift = st[D_SHIFT]
    last_t = st[D_LAST_T]
    nw = words.shape[0]
    nt_cap = tr_t.shape[0]
    k = 0
    if base_set == 0:  # skip to the first TIME_HIGH
        while k < nw and ((_word(words, k, rot) >> 60) & 0xF) != 8:
            word_counts[(_word(words, k, rot) >> 60) & 0xF] += 1
            k += 1
        st[D_SKIPPED] += k
        if k < nw:
            base_set = 1
            base, shift, _ = _time_high(_word(words, k, rot), 0, 0)
            word_counts[8] += 1
            k += 1
    # CD words are not counted one by one: every other type is, so they are what is left, and
    # the EVT_POS words are counted after the loop, in a branch-free pass.
    k_main = k
    counted_before = word_counts.sum()
    o_last = (out.shape[0] // 13 - EVENT_SLACK) * 13  # last offset a CD word may start at
    full = False
    while k < nw and not full:
        if o > o_last:
            break  # output full: the caller grows it and resumes here
        # a word writes at most 32 records: this many words fit without another check
        kend = min(nw, k + (o_last - o) // (13 * 32) + 1)
        while k < kend:
            w = _word(words, k, rot)
            typ = (w >> 60) & 0xF
            if _likely(typ <= 1):  # EVT_NEG / EVT_POS
                t = base + ((w >> 54) & 0x3F)
                if t < last_t:
                    _anomaly(2, k, st, anom_counts, anom_off, anom_kind, 1)
                last_t = t
                m = w & 0xFFFFFFFF
                x = (w >> 43) & 0x7FF
                y = (w >> 32) & 0x7FF
                xyp = x | (y << 16) | (typ << 32)
                if _likely(y < height and x + 32 <= width):  # every pixel of the mask is inside
                    while m != 0:
                        put_at(out, o, t, xyp + trailing_zeros(m))
                        o += 13
                        m &= m - 1
                else:
                    dropped = 0
                    while m != 0:
                        b = trailing_zeros(m)
                        m &= m - 1
                        if y < height and x + b < width:
                            put_at(out, o, t, xyp + b)
                            o += 13
                        else:
                            dropped += 1
                    if dropped:
                        _anomaly(0, k, st, anom_counts, anom_off, anom_kind, dropped)
                k += 1
                continue
            if typ == 10:  # EXT_TRIGGER
                if nt >= nt_cap:  # trigger output full: the caller grows it and resumes here
                    full = True
                    break
                t = base + ((w >> 54) & 0x3F)
                last_t = t
                tr_t[nt] = t
                tr_id[nt] = (w >> 40) & 0x1F
                tr_v[nt] = (w >> 32) & 1
                nt += 1
            elif typ == 8:
                base, shift, backwards = _time_high(w, base, shift)
                if backwards:
                    _anomaly(1, k, st, anom_counts, anom_off, anom_kind, 1)
            elif typ == 14:  # OTHERS: the ERC counters are kept, other subtypes skipped
                sub = (w >> 32) & 0xFFFF
                if sub == ERC_INPUT or sub == ERC_OUTPUT:
                    i = 0 if sub == ERC_INPUT else 2
                    erc_sums[i] += 1
                    erc_sums[i + 1] += w & 0x3FFFFF
            elif typ != 15:
                _anomaly(6, k, st, anom_counts, anom_off, anom_kind, 1)
            word_counts[typ] += 1
            k += 1
    n_pos = np.int64(0)
    for i in range(k_main, k):  # branch-free: vectorised
        n_pos += np.int64(((_word(words, i, rot) >> 60) & 0xF) == 1)
    n_cd = (k - k_main) - (word_counts.sum() - counted_before)
    word_counts[1] += n_pos
    word_counts[0] += n_cd - n_pos
    st[D_BASE_SET] = base_set
    st[D_BASE_TIME] = base
    st[D_SHIFT] = shift
    st[D_LAST_T] = last_t
    st[D_WORD_BASE] += k
    return o // 13, nt, k


@njit(cache=True)
def encode_words(ev_t, ev_x, ev_y, ev_p, tr_t, tr_id, tr_v, out, legacy):
    """EVT 2.1 words (int64 bit patterns) for events sorted by (t, y, p, x) and time-sorted
    triggers; returns the number of words.

    A TIME_HIGH whenever time bits 33..6 change; a trigger goes before the events of its time.
    Events of one time, row and polarity share a word while they fall in one 32-pixel block
    aligned on 32 (a repeated event starts a new word). Used to make test files; times must be
    below 2^34 us.
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
            out[n] = (np.int64(8) << 60) | ((h & 0x0FFFFFFF) << 32)
            n += 1
            high = h
        if is_trig:
            out[n] = (
                (np.int64(10) << 60)
                | ((t & 0x3F) << 54)
                | ((np.int64(tr_id[j]) & 0x1F) << 40)
                | ((np.int64(tr_v[j]) & 1) << 32)
            )
            j += 1
        else:
            y = np.int64(ev_y[i])
            p = np.int64(ev_p[i]) & 1
            x0 = np.int64(ev_x[i]) & ~np.int64(31)
            m = np.int64(0)
            while (
                i < ne and ev_t[i] == t and ev_y[i] == y and (np.int64(ev_p[i]) & 1) == p
                and ev_x[i] >= x0 and ev_x[i] < x0 + 32 and ((m >> (ev_x[i] - x0)) & 1) == 0
            ):  # fmt: skip
                m |= np.int64(1) << (ev_x[i] - x0)
                i += 1
            out[n] = (p << 60) | ((t & 0x3F) << 54) | ((x0 & 0x7FF) << 43) | ((y & 0x7FF) << 32) | m
        n += 1
    if legacy:
        for k in range(n):
            w = out[k]
            out[k] = (w << 32) | ((w >> 32) & 0xFFFFFFFF)
    return n

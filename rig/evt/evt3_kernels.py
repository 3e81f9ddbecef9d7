"""Numba kernels of the EVT3 codec: word encoding, upper-bound counting and decoding.

EVT3 words are 16-bit little-endian; the 4 top bits are the type (Prophesee "EVT 3.0 format",
OpenEB `evt3_event_types.h`):
  0x0 EVT_ADDR_Y   [11] system type, [10:0] y
  0x2 EVT_ADDR_X   [11] polarity, [10:0] x            (one CD event)
  0x3 VECT_BASE_X  [11] polarity, [10:0] x            (base of the following vectors)
  0x4 VECT_12      [11:0] valid mask, base += 12
  0x5 VECT_8       [7:0] valid mask, base += 8
  0x6 EVT_TIME_LOW [11:0] time bits 11..0
  0x7 CONTINUED_4, 0xF CONTINUED_12 (payload of multi-word events)
  0x8 EVT_TIME_HIGH [11:0] time bits 23..12
  0xA EXT_TRIGGER  [11:8] channel, [0] edge (1 = rising)
  0xD IMU, 0xE OTHERS [11:0] subtype (0x014 ERC input count, 0x016 ERC output count)
The kernels are written for the state to be carried between calls, so decoding a file in chunks
of any size gives the same output as decoding it whole.
"""

from __future__ import annotations

import sys

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

if sys.byteorder != "little":  # the kernels store little-endian records and words natively
    raise ImportError("rig.evt3 kernels need a little-endian CPU")

# ---------------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------------

# Encoder state slots (int64 array carried between EVT3Writer.write calls).
E_STARTED = 0  # 1 once a TIME_HIGH has been written
E_LOOP = 1  # the decoder's 24-bit wrap count after what was written
E_HIGH = 2  # the decoder's TIME_HIGH
E_LOW = 3  # the decoder's TIME_LOW (-1: must be written before the next event)
E_Y = 4  # last EVT_ADDR_Y written (-1: none)
E_NSTATE = 5

_TH = 0x8000
_TL = 0x6000
# Largest TIME_HIGH step written at once: faery ignores forward jumps of 4094 or more, so longer
# gaps are bridged by intermediate TIME_HIGH words, and every wrap is written as 4095 -> 0 (the
# one drop that OpenEB, evt3 and faery all count as a 24-bit wrap).
_TH_MAX_STEP = 2048


@njit(cache=True, inline="always")
def _th_up(high, target, out, n):
    """Raise TIME_HIGH from `high` to `target` (same loop) in steps every decoder follows."""
    while target - high >= 4094:
        high += _TH_MAX_STEP
        out[n] = _TH | high
        n += 1
    if target != high:
        out[n] = _TH | target
        n += 1
    return n


@njit(cache=True, inline="always")
def _enc_time(t, st, out, n):
    """Emit the TIME_HIGH/TIME_LOW words that bring the decoder's time to `t`."""
    loop_t = t >> 24
    high_t = (t >> 12) & 0xFFF
    low_t = t & 0xFFF
    if st[E_STARTED] == 0:
        st[E_STARTED] = 1
        st[E_LOOP] = 0
        st[E_HIGH] = min(high_t, _TH_MAX_STEP) if loop_t == 0 else 0
        out[n] = _TH | st[E_HIGH]
        n += 1
        st[E_LOW] = -1
    loop = st[E_LOOP]
    high = st[E_HIGH]
    if loop_t != loop or high_t != high:
        while loop < loop_t:
            n = _th_up(high, 0xFFF, out, n)
            out[n] = _TH  # 4095 -> 0: a wrap
            n += 1
            loop += 1
            high = 0
        n = _th_up(high, high_t, out, n)
        st[E_LOOP] = loop_t
        st[E_HIGH] = high_t
        st[E_LOW] = -1  # a new TIME_HIGH resets TIME_LOW: always restate it
    if st[E_LOW] != low_t:
        out[n] = _TL | low_t
        n += 1
        st[E_LOW] = low_t
    return n


@njit(cache=True)
def encode_words(ev_t, ev_x, ev_y, ev_p, tr_t, tr_id, tr_v, st, out, width, vector_min):
    """Encode time-sorted events and triggers (merged by time) into `out`; return the word count.

    Runs of >= `vector_min` events with the same time, row and polarity and strictly increasing x
    inside a 32-pixel window become VECT_BASE_X + VECT_12 + VECT_12 + VECT_8 (the grouping OpenEB's
    decoder expects: it reads a VECT_12 as the head of a 12+12+8 group and drops a group whose
    base + 32 exceeds the width); other events are EVT_ADDR_X. The input order is kept, so
    decode(encode(events)) returns exactly the events given.
    """
    ne = ev_t.shape[0]
    nt = tr_t.shape[0]
    i = 0
    j = 0
    n = 0
    use_vectors = width >= 32 and vector_min <= 32
    while i < ne or j < nt:
        if j < nt and (i >= ne or tr_t[j] <= ev_t[i]):
            n = _enc_time(tr_t[j], st, out, n)
            out[n] = 0xA000 | ((np.int64(tr_id[j]) & 0xF) << 8) | (np.int64(tr_v[j]) & 1)
            n += 1
            j += 1
            continue
        t = ev_t[i]
        n = _enc_time(t, st, out, n)
        y = np.int64(ev_y[i])
        if y != st[E_Y]:
            out[n] = y
            n += 1
            st[E_Y] = y
        p = np.int64(ev_p[i]) & 1
        x0 = np.int64(ev_x[i])
        if use_vectors:
            base = min(x0, width - 32)
            k = i + 1
            last_x = x0
            while (
                k < ne
                and ev_t[k] == t
                and np.int64(ev_y[k]) == y
                and (np.int64(ev_p[k]) & 1) == p
                and np.int64(ev_x[k]) > last_x
                and np.int64(ev_x[k]) < base + 32
            ):
                last_x = np.int64(ev_x[k])
                k += 1
            if k - i >= vector_min:
                mask = np.int64(0)
                for m in range(i, k):
                    mask |= np.int64(1) << (np.int64(ev_x[m]) - base)
                out[n] = 0x3000 | (p << 11) | base
                out[n + 1] = 0x4000 | (mask & 0xFFF)
                out[n + 2] = 0x4000 | ((mask >> 12) & 0xFFF)
                out[n + 3] = 0x5000 | ((mask >> 24) & 0xFF)
                n += 4
                i = k
                continue
        out[n] = 0x2000 | (p << 11) | x0
        n += 1
        i += 1
    return n


# ---------------------------------------------------------------------------------------------
# Decoder
# ---------------------------------------------------------------------------------------------

# Decoder state slots (int64 array carried between chunks).
D_BASE_SET = 0  # 1 once the first TIME_HIGH was seen (words before it are skipped)
D_LOOP = 1
D_HIGH = 2
D_LOW = 3
D_Y = 4  # 12-bit content of the last EVT_ADDR_Y (bit 11 = system type)
D_IS_CD = 5  # 1 after EVT_ADDR_Y (OpenEB: a type-0x1 word clears it)
D_BASE_X = 6
D_POL = 7
D_HAVE_BASE = 8
D_ERC_STAGE = 9  # 0: none; 1, 2, 3: expecting CONTINUED_12, CONTINUED_12, CONTINUED_4
D_ERC_KIND = 10
D_ERC_VALUE = 11
D_WORD_BASE = 12  # index (in words from the data start) of words[0]
D_N_ANOM = 13  # anomaly samples kept so far
D_SKIPPED = 14  # words skipped before the first TIME_HIGH
D_NSTATE = 16


def new_decoder_state() -> np.ndarray:
    """A fresh EVT3 decoder state."""
    return np.zeros(D_NSTATE, np.int64)


@intrinsic
def store_u64(typingctx, buf, offset, value):
    """Store a little-endian 64-bit value at any byte offset of a uint8 array (unaligned).

    The events dtype is a packed 13-byte record (t i8, x u2, y u2, p u1): one store writes t, a
    second writes x | y << 16 | p << 32 (its 3 spare bytes land in the next record, which is
    written after it), so an event costs 2 stores instead of 4 strided ones.
    """

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(arr.data, [args[1]])
        builder.store(args[2], builder.bitcast(ptr, ir.IntType(64).as_pointer()), align=1)
        return context.get_dummy_value()

    return types.void(buf, types.int64, types.int64), codegen


@njit(cache=True, inline="always")
def put_at(buf, o, t, xyp):
    """Write the event record at byte offset `o` (13 * its index) of an EVENT_DTYPE byte view.

    `xyp` is x | y << 16 | p << 32; its bits 40-63 land in the next record's first bytes, which
    the next record overwrites (so they may hold flags).
    """
    store_u64(buf, o, t)
    store_u64(buf, o + 8, xyp)


@intrinsic
def _popcount(typingctx, src):
    """Number of set bits (LLVM ctpop), so the counting pass vectorises."""

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return src(src), codegen


@njit(cache=True)
def count_bounds(words):
    """Upper bounds of (events, triggers) in `words` (exact before validity).

    Branch-free so LLVM vectorises it: it costs a fraction of the decode it sizes.
    """
    ne = np.int64(0)
    nt = np.int64(0)
    for k in range(words.shape[0]):
        w = np.int64(words[k])
        typ = w >> 12
        m = (w & 0xFFF) if typ == 4 else ((w & 0xFF) if typ == 5 else np.int64(0))
        ne += _popcount(m) + np.int64(typ == 2)
        nt += np.int64(typ == 10)
    return ne, nt


#: Spare event records the caller gives `decode_words` past the bound of the events it keeps:
#: a VECT_BASE_X group writes up to 32 records from the current position, and each record store
#: spills 3 bytes into the next one.
EVENT_SLACK = 34


@njit(cache=True, inline="always")
def _anomaly(kind, k, st, anom_counts, anom_off, anom_kind, amount):
    anom_counts[kind] += amount
    a = st[D_N_ANOM]
    if a < anom_off.shape[0]:
        anom_off[a] = st[D_WORD_BASE] + k
        anom_kind[a] = kind
        st[D_N_ANOM] = a + 1


# The decode table of a geometry (`decode_table`), int64:
#   [0, 4096)         EVT_ADDR_Y content c (bit 11 system type, y)  -> c << 16 | (c < height) << 48
#   [4096]            ROW_NOT_CD: before any EVT_ADDR_Y or after a non-CD address -> 0
#   [4097, 4097+4096) EVT_ADDR_X content (p << 11 | x) -> x | p << 32 | (x < width) << 48
# so an address word is two loads: `row | xcol` is the record's x | y << 16 | p << 32 (bit 48 is
# spare, see put_at) and bit 48 of `row & xcol` says whether an EVT_ADDR_X event is kept.
ROW_NOT_CD = 4096
X_TABLE = 4097
TABLE_SIZE = 4097 + 4096
_OK = 48  # the in-geometry bit


def decode_table(width: int, height: int) -> np.ndarray:
    """The lookup table `decode_words` needs for a width x height sensor (see above)."""
    tab = np.zeros(TABLE_SIZE, np.int64)
    c = np.arange(4096, dtype=np.int64)
    tab[:4096] = (c << 16) | ((c < height).astype(np.int64) << _OK)
    x = c & 0x7FF  # x has 11 bits: a geometry wider than 2048 keeps every x
    tab[X_TABLE:] = x | ((c >> 11) << 32) | ((x < min(width, 2048)).astype(np.int64) << _OK)
    return tab


def _expect(value: bool):
    """`llvm.expect` as a numba intrinsic: marks the way a branch usually goes.

    LLVM then lays out and allocates registers for that path: the decode loops' state stays in
    registers instead of being spilled around the rare paths (measured: the EVT3 kernel on a
    real recording 1.04 -> 0.93 ms with `_likely` on its address-word branch).
    """

    @intrinsic
    def expect(typingctx, cond):
        def codegen(context, builder, signature, args):
            i1 = ir.IntType(1)
            fnty = ir.FunctionType(i1, [i1, i1])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.expect.i1")
            return builder.call(fn, [args[0], ir.Constant(i1, int(value))])

        return types.boolean(types.boolean), codegen

    return expect


_likely = _expect(True)
_unlikely = _expect(False)


@njit(cache=True)
def decode_words(
    words, st, width, height, tab,
    out, ne0,
    tr_t, tr_id, tr_v, nt0,
    erc_sums, word_counts, anom_counts, anom_off, anom_kind,
):  # fmt: skip
    """Decode `words` into the outputs from positions (ne0, nt0); return (ne, nt, words used).

    Semantics are OpenEB's: t = loop * 2^24 + high * 2^12 + low; a wrap is counted when the new
    TIME_HIGH is at least 2048 below the previous one; a new TIME_HIGH resets TIME_LOW to 0; words
    before the first TIME_HIGH are skipped. Vector words are decoded one by one as the format
    specifies (VECT_12 advances the base by 12, VECT_8 by 8); a VECT_BASE_X followed by the
    12 + 12 + 8 group the sensor writes, all inside the geometry, is decoded as one 32-bit mask
    (same events, one loop instead of four branchy words). Events outside the geometry are
    dropped and counted. `tab` is `decode_table(width, height)`. `anom_off` receives word
    indices (relative to the data start). `out` is the uint8 view of an EVENT_DTYPE array;
    decoding stops early (fewer words used) when fewer than EVENT_SLACK records are left past
    the position or a trigger finds no slot, and the state then resumes from the first unused
    word. ERC counters are summed into `erc_sums` (input records, input events, output
    records, output events).
    """
    o = ne0 * 13
    nt = nt0
    loop = st[D_LOOP]
    high = st[D_HIGH]
    low = st[D_LOW]
    ycur = st[D_Y] if st[D_IS_CD] != 0 else ROW_NOT_CD
    base_x = st[D_BASE_X]
    pol = st[D_POL]
    have_base = st[D_HAVE_BASE]
    erc_stage = st[D_ERC_STAGE]
    erc_k = st[D_ERC_KIND]
    erc_v = st[D_ERC_VALUE]
    nw = words.shape[0]
    k = 0
    if st[D_BASE_SET] == 0:  # skip to the first TIME_HIGH
        while k < nw and (np.int64(words[k]) >> 12) != 8:
            word_counts[np.int64(words[k]) >> 12] += 1
            k += 1
        st[D_SKIPPED] += k
        if k < nw:
            st[D_BASE_SET] = 1
            high = np.int64(words[k]) & 0xFFF
            low = 0
            word_counts[8] += 1
            k += 1
    n_x_dropped = 0
    n_vec_events = 0
    n_vb = 0
    n_v12 = 0
    n_v8 = 0
    n_tl = 0
    n_th = 0
    tbase = (loop << 24) | (high << 12)
    t = tbase | low
    # a counter cut by the previous chunk's end: finish it first
    while erc_stage != 0 and k < nw:
        w = np.int64(words[k])
        typ = w >> 12
        c = w & 0xFFF
        if typ != (15 if erc_stage < 3 else 7):
            erc_stage = 0
            _anomaly(5, k, st, anom_counts, anom_off, anom_kind, 1)
            break
        word_counts[typ] += 1
        k += 1
        if erc_stage == 1:
            erc_v = c
            erc_stage = 2
        elif erc_stage == 2:
            erc_v |= c << 12
            erc_stage = 3
        else:
            erc_v |= (c & 0xF) << 24
            erc_sums[2 * erc_k] += 1
            erc_sums[2 * erc_k + 1] += erc_v
            erc_stage = 0
    o_last = (out.shape[0] // 13 - EVENT_SLACK) * 13  # last offset a word may start at
    # The address words are not counted one by one: every other word type is, so their number
    # is what is left, and the X words are the events they kept plus those they dropped.
    k_main = k
    o_main = o
    counted_before = word_counts.sum()
    nt_cap = tr_t.shape[0]
    full = False
    while k < nw and not full:
        if o > o_last:
            break  # output full: the caller grows it and resumes here
        # a word writes at most 12 records: this many words fit without another check
        kend = min(nw, k + (o_last - o) // (13 * 12) + 1)
        while k < kend:
            w = np.int64(words[np.uint64(k)])
            if _likely((w & 0xD000) == 0):  # EVT_ADDR_Y or EVT_ADDR_X: no branch between them
                # an EVT_ADDR_Y sets the row; an EVT_ADDR_X writes its record, kept when in the
                # geometry (a Y word's record is written too, and overwritten: never counted)
                ycur = w if w < 0x1000 else ycur
                r = tab[np.uint64(ycur)]
                f = tab[np.uint64(X_TABLE + (w & 0xFFF))]
                put_at(out, o, t, f | r)
                g = (f & r) >> _OK
                is_x = w >> 13
                if is_x > g:  # an EVT_ADDR_X outside the geometry or not CD
                    n_x_dropped += 1
                    _anomaly(4 if ycur == ROW_NOT_CD else 0, k, st, anom_counts, anom_off, anom_kind, 1)
                o += 13 * (is_x & g)
                k += 1
                continue
            typ = w >> 12
            c = w & 0xFFF
            if typ == 6:  # EVT_TIME_LOW
                n_tl += 1
                if c < low:
                    _anomaly(2, k, st, anom_counts, anom_off, anom_kind, 1)
                low = c
                t = tbase | low
            elif typ == 4 or typ == 5:  # VECT_12 / VECT_8
                if typ == 4:
                    n_v12 += 1
                    m = c
                    step = 12
                else:
                    n_v8 += 1
                    m = c & 0xFF
                    step = 8
                if m != 0:
                    r = tab[np.uint64(ycur)]
                    row_ok = (r >> _OK) & 1
                    ys = r & 0xFFFF0000
                    if have_base == 1 and row_ok == 1 and base_x + step <= width:
                        yp = ys | (pol << 32)
                        n_vec_events += _popcount(m)
                        while m != 0:
                            b = trailing_zeros(m)
                            m &= m - 1
                            put_at(out, o, t, (base_x + b) | yp)
                            o += 13
                    elif have_base == 0:
                        _anomaly(3, k, st, anom_counts, anom_off, anom_kind, 1)
                    elif ycur == ROW_NOT_CD:
                        _anomaly(4, k, st, anom_counts, anom_off, anom_kind, 1)
                    else:
                        dropped = 0
                        while m != 0:
                            b = trailing_zeros(m)
                            m &= m - 1
                            if row_ok == 1 and base_x + b < width:
                                put_at(out, o, t, (base_x + b) | ys | (pol << 32))
                                o += 13
                                n_vec_events += 1
                            else:
                                dropped += 1
                        if dropped:
                            _anomaly(0, k, st, anom_counts, anom_off, anom_kind, dropped)
                base_x += step
            elif typ == 3:  # VECT_BASE_X
                n_vb += 1
                base_x = c & 0x7FF
                pol = c >> 11
                have_base = 1
                r = tab[np.uint64(ycur)]
                if k + 3 < nw and ((r >> _OK) & 1) == 1 and base_x + 32 <= width:  # a whole group?
                    w1 = np.int64(words[np.uint64(k + 1)])
                    w2 = np.int64(words[np.uint64(k + 2)])
                    w3 = np.int64(words[np.uint64(k + 3)])
                    if (w1 >> 12) == 4 and (w2 >> 12) == 4 and (w3 >> 12) == 5:
                        m = (w1 & 0xFFF) | ((w2 & 0xFFF) << 12) | ((w3 & 0xFF) << 24)
                        xyp = base_x | (r & 0xFFFF0000) | (pol << 32)
                        n_vec_events += _popcount(m)
                        while m != 0:
                            put_at(out, o, t, xyp + trailing_zeros(m))
                            o += 13
                            m &= m - 1
                        base_x += 32
                        n_v12 += 2
                        n_v8 += 1
                        k += 3
            elif typ == 8:  # EVT_TIME_HIGH
                n_th += 1
                if high >= c + 2048:
                    loop += 1
                elif c < high:
                    _anomaly(1, k, st, anom_counts, anom_off, anom_kind, 1)
                if c != high:
                    low = 0
                high = c
                tbase = (loop << 24) | (high << 12)
                t = tbase | low
            else:
                word_counts[typ] += 1
                if typ == 10:  # EXT_TRIGGER
                    if nt >= nt_cap:  # trigger output full: the caller grows it and resumes here
                        word_counts[typ] -= 1
                        full = True
                        break
                    tr_t[nt] = t
                    tr_id[nt] = (c >> 8) & 0xF
                    tr_v[nt] = c & 1
                    nt += 1
                elif typ == 14:  # OTHERS
                    if c == 0x014 or c == 0x016:
                        erc_stage = 1
                        erc_k = 0 if c == 0x014 else 1
                        erc_v = 0
                        # read the CONTINUED_12, CONTINUED_12, CONTINUED_4 words ahead (the
                        # steps of the chunk-start loop above, written out again: as one shared
                        # function, inlined or not, the kernel ran 7 % slower)
                        while erc_stage != 0 and k + 1 < nw:
                            w2 = np.int64(words[k + 1])
                            t2 = w2 >> 12
                            c2 = w2 & 0xFFF
                            if t2 != (15 if erc_stage < 3 else 7):
                                erc_stage = 0
                                _anomaly(5, k + 1, st, anom_counts, anom_off, anom_kind, 1)
                                break
                            word_counts[t2] += 1
                            k += 1
                            if erc_stage == 1:
                                erc_v = c2
                                erc_stage = 2
                            elif erc_stage == 2:
                                erc_v |= c2 << 12
                                erc_stage = 3
                            else:
                                erc_v |= (c2 & 0xF) << 24
                                erc_sums[2 * erc_k] += 1
                                erc_sums[2 * erc_k + 1] += erc_v
                                erc_stage = 0
                elif typ == 1:  # OpenEB: a type-0x1 address is not CD; CD words are invalid after it
                    ycur = ROW_NOT_CD
                    _anomaly(6, k, st, anom_counts, anom_off, anom_kind, 1)
                elif typ == 9 or typ == 11 or typ == 12:
                    _anomaly(6, k, st, anom_counts, anom_off, anom_kind, 1)
                # 0x7 / 0xF outside a counter and 0xD (IMU) carry nothing we decode
            k += 1
    ne = o // 13
    n_other = word_counts.sum() - counted_before + n_tl + n_vb + n_v12 + n_v8 + n_th
    n_addr = (k - k_main) - n_other
    n_x = (ne - o_main // 13) - n_vec_events + n_x_dropped
    word_counts[2] += n_x
    word_counts[0] += n_addr - n_x
    word_counts[6] += n_tl
    word_counts[3] += n_vb
    word_counts[4] += n_v12
    word_counts[5] += n_v8
    word_counts[8] += n_th
    st[D_LOOP] = loop
    st[D_HIGH] = high
    st[D_LOW] = low
    st[D_Y] = ycur & 0xFFF
    st[D_IS_CD] = 1 if ycur != ROW_NOT_CD else 0
    st[D_BASE_X] = base_x
    st[D_POL] = pol
    st[D_HAVE_BASE] = have_base
    st[D_ERC_STAGE] = erc_stage
    st[D_ERC_KIND] = erc_k
    st[D_ERC_VALUE] = erc_v
    st[D_WORD_BASE] += k
    return ne, nt, k

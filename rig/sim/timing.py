"""The simulated rig's timing imperfections: what the synchronisation has to survive.

A pulse of the trigger MCU reaches both cameras through a wire; each device turns the physical
edge into its own record, late, with jitter, on its own drifting clock, and sometimes not at all.
`TimingParams` holds every number (`SimConfig(timing={...})` overrides them); `PulseDraws` are
the per-pulse random draws, a pure function of (seed, trigger run, pulse index) so a recording is
reproducible whatever the simulator's step sizes.

Sources of the defaults (docs/simulator.md, "Time and synchronisation"):

- MCU (firmware/README.md, "Timing on the real board"): the pin rises 58 CPU cycles (3.6 us)
  after Timer1's compare match, the time `PULSE` reports, and falls 25 cycles (1.6 us) after
  the width match; jitter is a few cycles (the instruction being finished). Its clock is the
  board's oscillator: a crystal is good to about +-20 ppm, the Uno's ceramic resonator to about
  +-0.5 % (set `mcu_drift_ppm` to model that one).
- Frame camera (FLIR Blackfly S BFS-U3-32S4C, Sony IMX252 global shutter): trigger edge to
  exposure start is `FrameSensorParams.trigger_delay_us` (10 us, of the order of the input
  stage's delay: the BFS technical reference gives 9.6-13.4 us propagation low -> high for the
  opto-isolated Line0, 10.8 us rise time for the non-isolated Line3 with a 1 kOhm pull-up). A
  Pregius sensor in trigger mode starts exposing on the trigger itself, not on the next line
  period, so the jitter is that of the input stage: sub-microsecond, modelled as Gaussian with
  `frame_trigger_jitter_us` (0.5 us rms, clipped at 3 sigma; a chosen value, no datasheet
  figure).
- Event camera (Prophesee EVK4, IMX636): trigger-in transitions are timestamped on the event
  time base at 1 us resolution (docs.prophesee.ai, "Timing Interfaces"; the input detects
  pulses down to 500 ns). The stamp is the event clock's whole microsecond after a short
  detection latency `event_trigger_latency_us` (0.5 us: an input synchroniser of a few clock
  cycles; no datasheet figure), so it lies in [latency - 1, latency) us of the true edge:
  within +-0.5 us, unbiased, with the default.
- Clocks: each camera's free-running clock has its own offset and drift (`DeviceClock`); by
  default seeded draws, N(0, 15 ppm) for the event camera and N(0, 25 ppm) for the frame camera
  (typical of the crystal oscillators on such boards).
- Losses, at rates (0 by default, so a default recording pairs every frame): frames exposed but
  lost in transport, triggers the frame camera misses (never exposed), trigger edges the event
  camera misses (each rising and falling edge independently). They add to the deterministic
  per-index fault sets of `SimConfig` (drop_frames, missed_triggers, missing_trigger_edges, ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

CYCLES_PER_US = 16  # the ATmega328P at 16 MHz


@dataclass
class TimingParams:
    """Latencies, jitters, clock drifts and loss rates of the simulated rig (see the module)."""

    # --- trigger MCU
    mcu_drift_ppm: float | None = None  # its oscillator vs true time; None: seeded, uniform +-max
    mcu_drift_max_ppm: float = 20.0  # range of the seeded draw (a crystal; a resonator: 5000)
    mcu_rise_latency_us: float = 58 / CYCLES_PER_US  # compare match -> pin high (3.625 us)
    mcu_fall_latency_us: float = 25 / CYCLES_PER_US  # width match -> pin low (1.5625 us)
    mcu_edge_jitter_us: float = 4 / CYCLES_PER_US  # uniform in [0, this): instruction finishing
    # --- frame camera (exposure start = edge + FrameSensorParams.trigger_delay_us + jitter)
    frame_trigger_jitter_us: float = 0.5  # rms, Gaussian clipped at 3 sigma
    frame_drift_ppm: float | None = None  # None: seeded, N(0, 25 ppm)
    # --- event camera (EXT_TRIGGER stamp = floor(event clock at edge + latency))
    event_trigger_latency_us: float = 0.5
    event_drift_ppm: float | None = None  # None: seeded, N(0, 15 ppm)
    # --- losses (probability per pulse, per edge for the trigger edges)
    frame_drop_rate: float = 0.0  # exposed, lost in transport (its frame id is skipped)
    missed_trigger_rate: float = 0.0  # the frame camera ignores the pulse (no exposure, no id)
    trigger_edge_drop_rate: float = 0.0  # the event camera misses the edge

    def __post_init__(self) -> None:
        for name in ("frame_drop_rate", "missed_trigger_rate", "trigger_edge_drop_rate"):
            v = float(getattr(self, name))
            if not 0.0 <= v < 1.0:
                raise ValueError(f"timing parameter {name} must be in [0, 1), got {v}")
        for name in ("mcu_rise_latency_us", "mcu_fall_latency_us", "mcu_edge_jitter_us",
                     "frame_trigger_jitter_us", "event_trigger_latency_us", "mcu_drift_max_ppm"):
            if float(getattr(self, name)) < 0.0:
                raise ValueError(f"timing parameter {name} must not be negative")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> TimingParams:
        d = dict(d or {})
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown timing parameter(s) {bad}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def ideal(cls) -> TimingParams:
        """No latency spread, no jitter, no drift (what the simulator did before these were
        modelled, except the fixed trigger delay): a reference for tests."""
        return cls(mcu_drift_ppm=0.0, mcu_rise_latency_us=0.0, mcu_fall_latency_us=0.0,
                   mcu_edge_jitter_us=0.0, frame_trigger_jitter_us=0.0, frame_drift_ppm=0.0,
                   event_trigger_latency_us=0.0, event_drift_ppm=0.0)


@dataclass(frozen=True)
class PulseDraws:
    """The random numbers one pulse uses (uniforms in [0, 1), one standard normal)."""

    rise_jitter: float
    fall_jitter: float
    frame_jitter: float  # standard normal
    frame_drop: float
    missed_trigger: float
    rise_drop: float
    fall_drop: float

    @classmethod
    def draw(cls, seed: int, run: int, index: int) -> PulseDraws:
        rng = np.random.default_rng([int(seed), 0x7A1E, int(run), int(index)])
        u = rng.random(6)
        return cls(float(u[0]), float(u[1]), float(np.clip(rng.standard_normal(), -3.0, 3.0)),
                   float(u[2]), float(u[3]), float(u[4]), float(u[5]))


def seeded_mcu_drift_ppm(seed: int, max_ppm: float) -> float:
    """The MCU oscillator's drift for a seed: uniform in [-max_ppm, +max_ppm]."""
    rng = np.random.default_rng([int(seed), 0x3C0C])
    return float(rng.uniform(-max_ppm, max_ppm))

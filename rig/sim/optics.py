"""The simulated coaxial rig's optics: the default lenses and camera poses (the ground truth
calibration is measured against). The geometry types themselves live in `rig.geometry`."""

from __future__ import annotations

import numpy as np

from rig.geometry import CameraModel, RigGeometry, rotation_from_euler_deg

__all__ = ["DEFAULT_MIRROR", "LENS_FOCAL_MM", "CameraModel", "RigGeometry", "default_rig",
           "rotation_from_euler_deg"]

#: Focal length of both simulated lenses (what turns a PSF in micrometres into pixels).
LENS_FOCAL_MM = 8.0

#: The README's rig: the EVK4 sits on the beam splitter's reflected arm and sees a mirror image.
DEFAULT_MIRROR = "event"


def default_rig(full_res: bool = False) -> RigGeometry:
    """The simulated coaxial rig: BFS-U3-32S4C (3.45 um pixels) and EVK4 (4.86 um) behind one
    beam splitter, both with an 8 mm lens, the event arm slightly rotated and offset.

    Full resolution is 2048x1536 and 1280x720; the default halves both (1024x768, 640x360),
    which fits a laptop. The lateral offset (0.3 mm, -0.2 mm) is what a careful beam-splitter
    alignment leaves; it makes the homography residual sub-pixel from 1 m to infinity.
    """
    f_mm = LENS_FOCAL_MM
    f_frame_px = f_mm / 3.45e-3
    f_event_px = f_mm / 4.86e-3
    frame = CameraModel(
        "frame", 2048, 1536,
        np.array([[f_frame_px, 0.0, 1023.5 + 6.2], [0.0, f_frame_px * 1.0004, 767.5 - 4.1],
                  [0.0, 0.0, 1.0]]),
        np.array([-0.115, 0.092, 0.0004, -0.0003, -0.021]),
    )
    event = CameraModel(
        "event", 1280, 720,
        np.array([[f_event_px, 0.0, 639.5 - 3.3], [0.0, f_event_px * 0.9997, 359.5 + 2.7],
                  [0.0, 0.0, 1.0]]),
        np.array([-0.087, 0.061, -0.0005, 0.0002, -0.012]),
    )
    rig = RigGeometry(frame, event, rotation_from_euler_deg(0.35, -0.42, 0.25),
                      np.array([0.3e-3, -0.2e-3, 1.5e-3]))
    if not full_res:
        rig = RigGeometry(frame.scaled(0.5), event.scaled(0.5), rig.R_ev_fr, rig.T_ev_fr_m)
    return rig

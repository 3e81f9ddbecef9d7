"""The live preview of `rig record --preview` and `rig calibrate --preview`: a page on
http://127.0.0.1:8765/ with the newest frame and the events of the last frame period drawn over
it (on a calibration's aligned grid, or side by side), the event rate, the frame's histogram and
saturated share, and the trigger / frame / drop counters (docs/hardware.md, "Live preview").

- `feed.PreviewFeed`: what the recorder publishes (references and counters, never a copy);
- `events.RawTail`: the events, read from the event camera's RAW file as it grows;
- `render`: the pictures (`OverlayRenderer`) and the frame's statistics;
- `alignment.PreviewAlignment`: a calibration as look-up tables (made by `calibration.preview`);
- `server.PreviewServer`: the drawing thread and the HTTP server (`/`, `/snapshot.png`,
  `/stats.json`).
"""

from rig.preview.alignment import PreviewAlignment
from rig.preview.feed import PreviewFeed, SessionInfo
from rig.preview.render import FeedView, OverlayRenderer, Picture
from rig.preview.server import DEFAULT_HOST, DEFAULT_PORT, PreviewError, PreviewServer

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "FeedView", "OverlayRenderer", "Picture", "PreviewAlignment",
           "PreviewError", "PreviewFeed", "PreviewServer", "SessionInfo"]

"""The event polarity colours every picture of the toolkit uses (previews, `rpea show`, videos,
`cacd predict`): ON blue, OFF orange. Blue and orange stay apart for red-green colour-blind eyes,
and they differ in brightness too (video luma Y 82 and 133; blue and red had 82 and 90), so they
are still told apart where a video's half-resolution colour (H.264 4:2:0) blurs neighbouring ON
and OFF pixels together; both stand out on white (Y 255) and on a dimmed frame."""

from __future__ import annotations

ON_RGB = (0, 90, 255)
OFF_RGB = (230, 110, 0)

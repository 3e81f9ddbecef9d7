"""The physically simulated rig: a procedural HDR driving scene seen by a frame camera and an
event camera behind a beam splitter, plus a simulated trigger MCU. Deterministic given a seed."""

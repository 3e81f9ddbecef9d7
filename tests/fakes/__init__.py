"""Hardware-free stand-ins for vendor SDK modules (PySpin, metavision_hal), injected via sys.modules.

File names carry a `fake_` prefix so nothing here can shadow the real SDK on sys.path.
"""

"""Drive the coaxial event + frame rig (real or simulated) and record synchronised sessions."""

__version__ = "0.1.0"

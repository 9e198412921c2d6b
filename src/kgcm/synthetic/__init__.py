"""Simulators with exact potential outcomes: ``arctic`` (gridded), ``seaice`` (veris physics)
and the paper protocol."""

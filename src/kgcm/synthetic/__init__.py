"""Simulators with exact potential outcomes: ``arctic`` (gridded) and the paper protocol."""

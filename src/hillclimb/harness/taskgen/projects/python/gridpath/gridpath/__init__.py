"""Paths on character grids."""

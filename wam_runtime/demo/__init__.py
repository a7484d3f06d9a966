"""Demos: the foundation slice and the closed-loop reference world."""

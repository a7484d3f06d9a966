"""Demos: the foundation slice, the closed-loop reference world, recorded demo runs."""

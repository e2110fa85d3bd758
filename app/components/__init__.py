"""Pieces several pages show: the banners for a server or store that is not there, a stored report, clip uploads."""

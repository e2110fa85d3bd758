"""Pixels in: the one image decoder and PNG encoder (``images``), video probing and adaptive frame sampling
(``video``), and the video encoder for fixtures and synthetic clips (``video_writer``). Imports nothing from the
rest of facecast, so every layer above can use it."""

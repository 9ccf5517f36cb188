"""Data access shared by training and inference: image decoding, image lists, atomic files."""

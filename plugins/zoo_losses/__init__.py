"""Built-in losses: ArcFace with dynamic or epoch-scheduled margins, cross-entropy."""

"""Built-in global poolings (GeM, average, max) and necks (option-D, Linear+Swish, Dropout+Linear)."""

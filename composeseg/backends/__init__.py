"""Model-family backends: how each transformers SAM variant encodes and decodes."""

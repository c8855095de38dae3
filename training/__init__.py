"""CadSnap training: synthetic data, training recipes, merge, GGUF export, evaluation."""

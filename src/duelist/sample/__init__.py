"""Sampling: generation for evaluation and data building; later best-of-N and reranking."""

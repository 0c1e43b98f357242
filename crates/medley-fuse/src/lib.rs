//! Fusion of per-modality vectors into content embeddings, and Semantic IDs.

"""Recall: the pieces that rank long-term memories. `filters` (one metadata filter language),
`text` (words and BM25), `hybrid` (fusing text and vector rankings), `decay` (recency),
`dedupe` (near-duplicate merging) and `embedders` (text to vectors)."""

"""Command-line tools: qrt-gguf (and, as they land, qrt-run, qrt-perplexity, qrt-bench)."""

"""Applications built on the generators: each turns a structured request into ranked, filtered outputs."""

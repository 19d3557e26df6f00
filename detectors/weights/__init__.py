"""Weight-lineage detection: read the same sampled elements of several models, fit, classify."""

"""Default settings, known base models, identity prompt sets and alias tables (package data)."""

"""Jinja2 texts of discussion comments, moderation issues and mention replies (package data)."""

"""The page of the interactive app: plain HTML, JS and CSS, served as they are (no build step).

A package so that the build ships it like any other (``pyproject.toml``, package-data).
"""

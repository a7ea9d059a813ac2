"""Linli (邻里): carries neighborhood warnings down a community's chain of WeChat groups."""

__version__ = "0.1.0"

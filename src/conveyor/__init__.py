"""Conveyor: a continuous-delivery engine that runs one pipeline definition locally or on AWS."""

__version__ = "0.1.0"

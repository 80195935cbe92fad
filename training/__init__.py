"""Turns labelled sensor readings (synthetic by default, or a CSV file) into a model artifact."""

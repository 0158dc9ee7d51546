"""Baseline generators: cheap, honest lower bounds to compare real generators against."""

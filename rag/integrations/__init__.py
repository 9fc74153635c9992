"""Adapters that offer the search and the cited answers to other frameworks' pipelines."""

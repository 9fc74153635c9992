"""Evaluation: standard datasets and adapters (`datasets`), pure scoring functions (`metrics`), runner, report."""

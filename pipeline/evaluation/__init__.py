"""After training: rank-1/rank-5 evaluation, prediction, reports, comparison, export."""

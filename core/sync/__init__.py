"""Stage sync: read CRMs' stages back, reconcile, fan out."""

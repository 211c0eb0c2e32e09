"""Transferability estimates: score each starting encoder on each target's training examples with
LogME and H-score (transformer-ranker's implementations), before or beside the trials themselves."""

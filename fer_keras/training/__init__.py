"""Training: one custom loop for every tf.distribute strategy."""

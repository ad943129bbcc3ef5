"""Data path of fer_keras: data set adapters, MTCNN face preprocessing, TFRecord cache, tf.data input."""

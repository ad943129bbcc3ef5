"""TF Serving deployment of fer_keras models: configs, a local TF-Serving-compatible server, a client.

* ``serving.config``: parse/check ``models.config``, ``batching.config``, ``monitoring.config``.
* ``serving.server``: ``python -m serving.server`` (gRPC PredictionService/ModelService + REST).
* ``serving.client``: ``FerClient`` and ``python -m serving.client``.
"""

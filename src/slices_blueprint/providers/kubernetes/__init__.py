"""Kubernetes provider (flavor type ``k8s``): ``driver.py`` (the driver), ``client.py`` (the
kubeconfig, the API client and error translation), ``pods.py`` (pod and policy manifests)."""

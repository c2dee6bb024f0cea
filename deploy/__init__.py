"""Deployment files: the Kubernetes manifests and the script that renders them (render_k8s.py)."""

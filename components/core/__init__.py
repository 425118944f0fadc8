"""Shared machinery every part of the suite builds on; it imports no service, no edge and no section.

model (field types, Model), errors (fix lines), catalog (limits), versions (image pins), container (the one
hardened container helper), routing (Traefik labels), storage (data directories), host (the Docker host and
host steps), deployment (what a component receives), postgres (a service's database), outputs, scripts.
"""

"""Reusable test kit (like ``zarr.testing``): builders of synthetic BigEarthNet inputs."""

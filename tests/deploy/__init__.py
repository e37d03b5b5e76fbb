"""Deployment engine tests: real loopback servers, real tarballs, real (small) filesystems."""

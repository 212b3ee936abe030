"""Backups: catalog (list, choose, retention), create (dump, archive, manifest), actions."""

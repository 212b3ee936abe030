"""Prisma-compatible migrations: status, deploy, resolve, lint, and zero-downtime expand/contract."""

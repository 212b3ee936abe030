"""Test rig: service start script (`run`), sample app context, Kubernetes emulator."""

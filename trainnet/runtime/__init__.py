"""Devices, memory arenas and the Net that executes a Plan."""

"""Bundle loader, backends and the manifest-driven sampling loop. Imports no torch, so the
same code runs on an emulated ARM64 userland that only has numpy and the backends."""

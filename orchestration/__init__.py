"""Work that spans apps: above every app's domain modules, below the entry points (docs/ARCHITECTURE.md,
"Layers")."""

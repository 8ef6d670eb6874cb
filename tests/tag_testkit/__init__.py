"""Test support shared by every test module (importable because pytest puts tests/ on sys.path)."""

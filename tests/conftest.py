"""Suite-wide settings: never touch the network, and make the test backend available everywhere."""
import os

# Hub libraries (transformers, huggingface_hub, laion_clap) must never try the network from tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

"""No code path may unpickle a user's file with code execution allowed: the source never turns the check off."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tagcore.torch_files import UnsafeCheckpoint, load_torch_file, unpickling_cause

ROOT = Path(__file__).resolve().parents[2]
UNSAFE = re.compile(r"weights_only\s*=\s*False|allow_pickle\s*=\s*True|pickle\.loads?\(|torch\.load\((?![^)]*weights_only)")


def test_no_loader_disables_the_weights_only_check():
    offenders = []
    for folder in ("tagcore", "plugins", "transports", "frontends", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in UNSAFE.finditer(text)]
    assert not offenders, offenders


def test_loader_refuses_a_payload_and_names_the_file(tmp_path):
    from tag_testkit import malicious

    marker = tmp_path / "pwned"
    path = malicious.torch_checkpoint(tmp_path / "x.pt", marker)
    with pytest.raises(UnsafeCheckpoint, match=f"model {path} is unsafe or corrupt") as caught:
        load_torch_file(path, what="model", how_to_get="Get it again.")
    malicious.assert_not_run(marker)
    assert caught.value.cause.startswith("Unsupported global") and "weights_only" not in caught.value.message


def test_cause_drops_torch_advice():
    text = ("Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely "
            "succeed.\n\tWeightsUnpickler error: Unsupported global: GLOBAL posix.system was not an allowed global "
            "by default. Please use `torch.serialization.add_safe_globals([system])`.\n\nCheck the documentation")
    assert unpickling_cause(Exception(text)) == ("Unsupported global: GLOBAL posix.system was not an allowed "
                                                 "global by default.")

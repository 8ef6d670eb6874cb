"""The prompt set a benchmark runs: the bundled TAG set or any user file (text or AudioCaps-style CSV)."""
from __future__ import annotations

from pathlib import Path

from tagcore.errors import InvalidRequest
from tagcore.prompts_file import read_prompts_file

BUNDLED_NAME = "tag50.txt"


def bundled_prompts_path() -> Path:
    """benchmarks/prompts/tag50.txt in a checkout; tag_bench/prompt_sets/ in an installed wheel."""
    here = Path(__file__).resolve().parent
    for folder in (here / "prompt_sets", here.parent / "prompts"):
        if (folder / BUNDLED_NAME).is_file():
            return folder / BUNDLED_NAME
    raise InvalidRequest(f"the bundled prompt set {BUNDLED_NAME} is not installed: pass --prompts FILE")


def load_prompts(path: Path | None, limit: int | None = None) -> list[str]:
    """Prompts from `path` (one per line, or CSV with a prompt/caption/text column), at most `limit` of them."""
    path = Path(path) if path else bundled_prompts_path()
    if not path.is_file():
        raise InvalidRequest(f"prompt file {path} does not exist")
    prompts = [entry.prompt for entry in read_prompts_file(path) if entry.prompt.strip()]
    if not prompts:
        raise InvalidRequest(f"{path} holds no prompts")
    return prompts[:limit] if limit else prompts

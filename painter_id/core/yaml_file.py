"""Reading a YAML file a user edits (``params.yaml``), bounded and strict, with one-line errors.

Bounded: a huge file or an alias bomb ("billion laughs") is refused before it costs memory.
Strict: a key given twice in one mapping is an error (YAML itself keeps the last silently).
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml

from painter_id.core.errors import PipelineError, show

# A params file is a few kB; these bound what a hostile one (huge, or an alias bomb) can cost.
MAX_BYTES = 1 << 20
MAX_NODES = 10_000


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable):
                if key in seen:
                    raise PipelineError(f"params.yaml: key {show(key)} appears twice "
                                        f"(line {key_node.start_mark.line + 1}); keep one")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _count_nodes(value: Any, budget: int) -> int:
    """``budget`` less the values in ``value`` counted with every alias expanded; below 0 means too many."""
    stack = [value]
    while stack and budget >= 0:
        item = stack.pop()
        budget -= 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return budget


def read_yaml(path: Path) -> Any:
    """The YAML value of ``path``, bounded in size and in aliases (a "billion laughs" bomb is refused)."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise PipelineError(f"{path}: larger than {MAX_BYTES} bytes; a params file is a few kB, check it")
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; run the stage from the project root, where params.yaml lives") from None
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise PipelineError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__}); "
                            "it must be a readable file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise PipelineError(f"{path}: not valid YAML{where}; fix the syntax and run again") from None
    except RecursionError:
        raise PipelineError(f"{path}: nested too deeply; fix the file") from None
    if _count_nodes(raw, MAX_NODES) < 0:
        raise PipelineError(f"{path}: holds more than {MAX_NODES} values once its aliases (*name) are "
                            "expanded; write the values out")
    return raw

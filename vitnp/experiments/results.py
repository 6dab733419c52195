"""``<out>/results.json`` of a resumable experiment: one nested dict, saved atomically after every part, so that an
interrupted run continues where it stopped, and a call with other settings is refused instead of mixing runs."""
from __future__ import annotations

import json
import os
import time

from ..io.atomic import write_text


class Results:
    """The results file of one experiment in ``out_dir``; ``has``/``get``/``put`` by a path of keys.

    fmt : the file's format name, checked when the file exists.   settings : this call's settings (a JSON-able
    dict), which must equal the saved ones except for the keys in ``free`` (those select what to run, not how).
    parts : the empty sections of a new file.
    """

    def __init__(self, out_dir, settings: dict, fmt: str, *, free=(), parts=()):
        os.makedirs(out_dir, exist_ok=True)
        self.path = os.path.join(out_dir, "results.json")
        if os.path.exists(self.path):
            try:
                with open(self.path, encoding="utf-8") as f:
                    self.data = json.load(f)
            except (OSError, json.JSONDecodeError) as err:
                raise ValueError(f"{self.path}: cannot read it ({err}); move it away to start afresh") from None
            if not isinstance(self.data, dict) or self.data.get("format") != fmt:
                raise ValueError(f"{self.path}: not a results file of this experiment (format {fmt!r})")
            old = self.data.get("settings", {})
            differ = [f"{k}: {old.get(k)!r} (saved) vs {settings.get(k)!r}" for k in sorted(set(old) | set(settings))
                      if k not in free and old.get(k) != settings.get(k)]
            if differ:
                raise ValueError(f"{self.path} was made with other settings ({'; '.join(differ)}); run with the "
                                 f"same settings to resume, or choose another --out")
            self.data["settings"] = settings
        else:
            self.data = {"format": fmt, "settings": settings, **{part: {} for part in parts}}

    def has(self, *keys) -> bool:
        d = self.data
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return False
            d = d[k]
        return True

    def get(self, *keys):
        d = self.data
        for k in keys:
            d = d[k]
        return d

    def put(self, keys, value) -> None:
        d = self.data
        for k in keys[:-1]:
            d = d.setdefault(k, {})
        d[keys[-1]] = value
        self.save()

    def save(self) -> None:
        self.data["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
        write_text(self.path, json.dumps(self.data, indent=1, allow_nan=False) + "\n")

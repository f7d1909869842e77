"""`config.cfg` read into typed settings: one schema, defaults in one place, unknown keys refused.

The file keeps the reference's INI sections and keys:

    [shared_parameters]   SharedConfig   which dataset, folders, device, seed
    [train_parameters]    mode = train   (the reference's; nothing else)
    [test_parameters]     mode = test
    [<dataset>]           DatasetConfig  frames layout, flow, boxes, cubes, caches
    [SelfComplete]        ClozeConfig    the cloze networks and their training

Each section is a frozen dataclass whose fields carry the defaults; a key is read by
its field name (or the reference's spelling in `ALIASES`) in any case, as configparser
matches keys, and converted by the field's type; section names keep their case. A
dataset section may also set any `[SelfComplete]` key, which then holds for that
dataset only. Unknown sections and keys are errors naming the closest known key,
so a typo never falls back to a default silently. Relative paths are resolved
against the folder holding the config file. `--set SECTION.KEY=VALUE` on every script
overrides the file, and is never overridden by it: of the sections a key is read from
(the dataset's, then [SelfComplete]), one set by --set comes first (`source_section`).

    schema.py     the dataclasses, their defaults and ranges; section_keys lists each key
    overrides.py  `--set` parsing and where each value comes from (precedence)
    convert.py    a setting's text read as its key's type, in its range
    reader.py     load_config: the INI file checked and read into a RunConfig
    device.py     resolve_device: `device = ...` checked against what PyTorch sees
"""
from utils.config.device import resolve_device
from utils.config.overrides import parse_overrides
from utils.config.reader import load_config
from utils.config.schema import (ALIASES, BUILTIN_DATASETS, CLOZE, IGNORED_KEYS, SHARED, TEST, TRAIN, BoxParams,
                                 ClozeConfig, DatasetConfig, Detector, FlowMethod, ForegroundMode, KeySpec, Layout,
                                 Precision, RunConfig, SharedConfig, SplitOptions, eval_number, key_name,
                                 section_keys)

__all__ = ["ALIASES", "BUILTIN_DATASETS", "CLOZE", "IGNORED_KEYS", "SHARED", "TEST", "TRAIN", "BoxParams",
           "ClozeConfig", "DatasetConfig", "Detector", "FlowMethod", "ForegroundMode", "KeySpec", "Layout",
           "Precision", "RunConfig", "SharedConfig", "SplitOptions", "eval_number", "key_name", "load_config",
           "parse_overrides", "resolve_device", "section_keys"]

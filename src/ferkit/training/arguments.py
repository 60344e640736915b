"""``ferkit train``/``cv`` options, generated from :class:`TrainConfig`'s fields.

Every field is one option, named after it (``lr_drop`` → ``--lr-drop``), documented by the
help text on the field, with the field's choices; booleans get ``--name``/``--no-name``. The
value of a field is, in rising order of precedence: its default, the ``--config`` recipe file,
the option given on the command line. Torch-free, like the config.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_config_options(parser)
    >>> config_from_arguments(parser.parse_args(["faces.csv", "--out", "run", "--lr", "0.1"])).lr
    0.1
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from ferkit.training.config import TrainConfig, read_config_file
from ferkit.utils.errors import FerkitError


def _fields(cross_validation: bool = False) -> list[dataclasses.Field]:
    return [
        item
        for item in dataclasses.fields(TrainConfig)
        if item.metadata["cv"] or not cross_validation
    ]


def flag_of(item: dataclasses.Field) -> str:
    """The option string of config field ``item`` (``--lr-drop``; the data is positional).

    Example:
        >>> [flag_of(item) for item in dataclasses.fields(TrainConfig)][:3]
        ['data', '--out', '--split']
    """
    if item.metadata.get("positional"):
        return item.name
    return item.metadata["flag"] or "--" + item.name.replace("_", "-")


def _default_text(value) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, dict):
        return "none" if not value else json.dumps(value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if value == "" else str(value)


def add_config_options(parser: argparse.ArgumentParser, cross_validation: bool = False) -> None:
    """Add one option per config field (and ``--config FILE``) to ``parser``.

    Options that are not given stay out of the parsed namespace (their default is
    ``argparse.SUPPRESS``), so :func:`config_from_arguments` can tell a value typed on the
    command line from a default and let it override the ``--config`` file.
    """
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="JSON recipe of config fields (e.g. recipes/fer2013-default.json, or a run's "
        "config.json); options given on the command line override it",
    )
    defaults = TrainConfig()
    for item in _fields(cross_validation):
        default = getattr(defaults, item.name)
        if item.metadata.get("positional"):
            parser.add_argument(item.name, help=item.metadata["help"])
            continue
        options = {
            "dest": item.name,
            "default": argparse.SUPPRESS,
            "help": f"{item.metadata['help']} (default: {_default_text(default)})",
        }
        if item.metadata.get("required"):
            options.update(required=True, help=item.metadata["help"])
        if isinstance(default, bool):
            options["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, dict):
            options.update(action="append", metavar="KEY=VALUE")
        elif isinstance(default, list):
            options.update(type=type(default[0]), nargs="+")
        else:
            options["type"] = type(default)
        if item.metadata["choices"] is not None:
            options["choices"] = item.metadata["choices"]
        parser.add_argument(flag_of(item), **options)


def parse_model_arguments(items: list[str]) -> dict:
    """``["channels=[8,8,8]", "dropout=0.3"]`` → ``{"channels": [8, 8, 8], "dropout": 0.3}``.

    A VALUE that is not JSON is kept as a string.

    Example:
        >>> parse_model_arguments(["channels=[8,8,8]", "norm=batch"])
        {'channels': [8, 8, 8], 'norm': 'batch'}
    """
    values = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise FerkitError(f"--model-arg {item!r}: expected KEY=VALUE")
        try:
            values[key] = json.loads(value)
        except json.JSONDecodeError:
            values[key] = value
    return values


def config_from_arguments(arguments: argparse.Namespace) -> TrainConfig:
    """The config of parsed options: defaults, then the ``--config`` file, then the options.

    ``--model-arg`` options are merged into the file's ``model_args`` key by key.
    """
    values = {}
    if getattr(arguments, "config", None):
        values = read_config_file(arguments.config)
    given = {
        name: value
        for name, value in vars(arguments).items()
        if name in {item.name for item in dataclasses.fields(TrainConfig)}
    }
    if "model_args" in given:
        given["model_args"] = {
            **values.get("model_args", {}),
            **parse_model_arguments(given["model_args"]),
        }
    return TrainConfig.from_dict({**values, **given})


def config_to_arguments(config: TrainConfig, cross_validation: bool = False) -> list[str]:
    """The command-line arguments that rebuild ``config`` (every field, spelled out).

    Example:
        >>> config_to_arguments(TrainConfig(data="faces.csv"))[:3]
        ['faces.csv', '--out', 'runs/train']
    """
    arguments = []
    for item in _fields(cross_validation):
        value, flag = getattr(config, item.name), flag_of(item)
        if item.metadata.get("positional"):
            arguments.append(str(value))
        elif isinstance(value, bool):
            arguments.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, dict):
            for key, entry in value.items():
                arguments += [flag, f"{key}={json.dumps(entry, separators=(',', ':'))}"]
        elif isinstance(value, list):
            arguments += [flag, *map(str, value)]
        else:
            arguments += [flag, repr(value) if isinstance(value, float) else str(value)]
    return arguments

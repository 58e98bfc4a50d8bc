"""Bring your own schema: a mapping from a bank's column names and codings to transaction roles.

A :class:`ColumnMapping` says which of the user's columns plays which role, how the
channel and label columns are coded, which columns hold coordinates (and whether they are
km or lat/lon degrees), which location pairs become distances, and which further columns
pass through as features. It is given on the command line (``--map role=column``), in a
small TOML file (``--schema-file``), or both (``--map`` wins), and it is saved in the model
bundle so ``score`` reads new files exactly as ``train`` did.

TOML layout (every section optional; unnamed roles keep unmask's own column names)::

    [columns]
    id = "txn"            # transaction id           (default transaction_id)
    time = "ts"           # date-time                (default timestamp)
    card = "card"         # card / customer          (default customer_id)
    terminal = "merchant" # terminal or merchant     (default terminal_id)
    amount = "amt"        #                          (default amount)
    channel = "entry_mode"
    label = "fraud"       # evaluation only, never a feature
    scenario = "kind"     # evaluation only (whole numbers)

    [channel]
    card_not_present = ["CNP", "ecom"]
    card_present = ["CP"]

    [label]
    fraud = ["Y"]
    genuine = ["N"]

    [locations]
    units = "degrees"     # or "km" (x/y on a plane)
    billing = ["bill_lat", "bill_lon"]
    terminal = ["merch_lat", "merch_lon"]
    distances = [["billing", "terminal"]]
    travel = ["terminal"] # movement between a card's consecutive transactions

    [features]
    categorical = ["mcc", "device"]
    numeric = ["risk_score"]

    [amount]
    refunds = true        # negative amounts are refunds: history, never scored

``--map`` takes the same keys: ``--map card=card_no``, ``--map merchant=shop``,
``--map channel.card_not_present=CNP,ecom``, ``--map label.fraud=Y``,
``--map location.billing=bill_lat,bill_lon``, ``--map locations.units=degrees``,
``--map distances=billing-terminal``, ``--map travel=terminal``,
``--map categorical=mcc,device``, ``--map numeric=risk``, ``--map refunds=true``.

Example:
    >>> m = parse_cli(["card=card", "merchant=shop", "channel.card_not_present=CNP"])
    >>> m.columns["terminal"], m.card_not_present
    ('shop', ['CNP'])
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import BundleError, DataValidationError

# role -> (unmask's own column name, the canonical column in the typed view)
ROLES = {"id": "transaction_id", "time": "timestamp", "card": "customer_id",
         "terminal": "terminal_id", "amount": "amount", "channel": "channel",
         "label": "is_fraud", "scenario": "fraud_scenario"}
ALIASES = {"merchant": "terminal", "customer": "card", "timestamp": "time", "transaction_id": "id",
           "is_fraud": "label", "fraud_scenario": "scenario", "entry_mode": "channel"}
REQUIRED_ROLES = ("id", "time", "card", "terminal", "amount")
EVALUATION_ROLES = ("label", "scenario")
CARD_NOT_PRESENT = "card_not_present"
CARD_PRESENT = "card_present"
UNITS = ("km", "degrees")
NATIVE_LOCATIONS = {"customer": ["customer_x", "customer_y"], "terminal": ["terminal_x", "terminal_y"]}
_NAME = re.compile(r"^(?!.*_to_)[a-z][a-z0-9_]{0,30}$")   # "_to_" joins a distance's two names


@dataclass
class ColumnMapping:
    """Roles, codings, locations and pass-through features of a transactions file.

    Args:
        columns: role -> the user's column (roles in :data:`ROLES`).
        card_not_present, card_present: channel values meaning each (any other is an error).
        label_fraud, label_genuine: label values; ``None`` = 0/1 or true/false.
        locations: location name -> ``[x, y]`` (km) or ``[lat, lon]`` (degrees) columns.
        units: ``"km"`` or ``"degrees"`` (haversine distances).
        distances: pairs of location names whose distance is a feature.
        travel: locations whose movement between a card's consecutive transactions (distance
            and speed) is a feature.
        categorical, numeric: further columns passed through as features.
        refunds: accept negative amounts as refunds (kept in the card's history, not scored).
        explicit: roles/locations the user named (a missing column is then an error; unmask's
            own defaults are dropped when their columns are absent).
    """

    columns: dict = field(default_factory=lambda: {r: ROLES[r] for r in REQUIRED_ROLES})
    card_not_present: list = field(default_factory=lambda: [CARD_NOT_PRESENT])
    card_present: list = field(default_factory=lambda: [CARD_PRESENT])
    label_fraud: list | None = None
    label_genuine: list | None = None
    locations: dict = field(default_factory=dict)
    units: str = "km"
    distances: list = field(default_factory=list)
    travel: list = field(default_factory=list)
    categorical: list = field(default_factory=list)
    numeric: list = field(default_factory=list)
    refunds: bool = False
    explicit: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict, error=BundleError) -> "ColumnMapping":
        """From a saved model's JSON (``error`` is raised, one line, if it is malformed)."""
        try:
            mapping = cls(**state)
        except TypeError as err:
            raise error(f"column mapping does not match this unmask ({err})") from None
        problem = mapping.problem()
        if problem:
            raise error(f"column mapping: {problem}")
        return mapping

    def problem(self) -> str | None:
        """What is inconsistent in the mapping (a role, location or value), or ``None``."""
        def strings(value):
            return isinstance(value, list) and all(isinstance(v, str) and v for v in value)

        if not isinstance(self.columns, dict) or not all(isinstance(v, str) and v for v in self.columns.values()):
            return "every role needs a column name"
        unknown = sorted(set(self.columns) - set(ROLES))
        if unknown:
            return f"unknown role(s) {', '.join(unknown)} (roles: {', '.join(ROLES)}, merchant)"
        if self.units not in UNITS:
            return f"locations.units is {self.units!r}; use 'km' or 'degrees'"
        for name, cols in (self.locations.items() if isinstance(self.locations, dict) else [(None, None)]):
            if not (isinstance(name, str) and _NAME.match(name)) or not (strings(cols) and len(cols) == 2):
                return (f"location {name!r} needs a lower-case name and two columns "
                        f"({'lat, lon' if self.units == 'degrees' else 'x, y'})")
        pairs = self.distances if isinstance(self.distances, list) else [None]
        for pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2 and all(p in self.locations for p in pair)):
                return f"distance {pair!r} must name two of the locations ({', '.join(self.locations) or 'none'})"
        if not strings(self.travel) or any(t not in self.locations for t in self.travel):
            return f"travel {self.travel!r} must name locations ({', '.join(self.locations) or 'none'})"
        for name in ("card_not_present", "card_present", "categorical", "numeric"):
            if not strings(getattr(self, name)):
                return f"{name} must be a list of names"
        both = set(self.card_not_present) & set(self.card_present)
        if both:
            return f"channel value(s) {', '.join(map(repr, sorted(both)))} both card-present and not"
        if (self.label_fraud is None) != (self.label_genuine is None) or not all(
                v is None or strings(v) for v in (self.label_fraud, self.label_genuine)):
            return "give both label.fraud and label.genuine values (or neither: 0/1, true/false)"
        if not isinstance(self.refunds, bool) or not strings(self.explicit):
            return "refunds must be true or false"
        return None

    # -- the columns a file must have ---------------------------------------------------

    def feature_columns(self) -> dict:
        """``{what: column}`` of every column the features read (not the labels)."""
        needed = {role: col for role, col in self.columns.items() if role not in EVALUATION_ROLES}
        for name, cols in self.locations.items():
            needed.update({f"location {name}": cols[0], f"location {name} ": cols[1]})
        needed.update({f"categorical {c}": c for c in self.categorical})
        needed.update({f"numeric {c}": c for c in self.numeric})
        return needed

    def resolve(self, present, path) -> "ColumnMapping":
        """This mapping for a file with columns ``present``: unmask's own defaults whose
        columns are absent are dropped; a column the user (or a saved model) named that is
        absent is one line naming the file and the column. Labels may always be absent."""
        present = set(present)
        columns, missing = dict(self.columns), []
        for role, col in self.columns.items():
            if col in present:
                continue
            if role in EVALUATION_ROLES or (role not in REQUIRED_ROLES and role not in self.explicit):
                del columns[role]
            else:
                missing.append((col, role))
        locations = {}
        for name, cols in self.locations.items():
            absent = [c for c in cols if c not in present]
            if not absent:
                locations[name] = cols
            elif f"location.{name}" in self.explicit:
                missing += [(c, f"location {name}") for c in absent]
        for kind in ("categorical", "numeric"):
            missing += [(col, kind) for col in getattr(self, kind) if col not in present]
        if missing:
            raise _missing(path, missing, present)
        distances = [p for p in self.distances if all(n in locations for n in p)]
        travel = [t for t in self.travel if t in locations]
        explicit = sorted(set(self.explicit) | set(columns) | {f"location.{n}" for n in locations})
        return ColumnMapping(columns=columns, card_not_present=self.card_not_present,
                             card_present=self.card_present, label_fraud=self.label_fraud,
                             label_genuine=self.label_genuine, locations=locations, units=self.units,
                             distances=distances, travel=travel, categorical=list(self.categorical),
                             numeric=list(self.numeric), refunds=self.refunds, explicit=explicit)


def _missing(path, missing, present) -> DataValidationError:
    """One line naming every ``(column, role)`` the file lacks and the columns it has."""
    shown = ", ".join(map(repr, sorted(present)[:20])) + (", ..." if len(present) > 20 else "")
    required = "required " if any(role in REQUIRED_ROLES for _, role in missing) else ""
    named = ", ".join(f"{column!r} (the mapping's {role})" for column, role in missing)
    return DataValidationError(f"{path}: missing {required}column(s) {named}; found: {shown or 'none'}")


def native() -> ColumnMapping:
    """unmask's own schema (the built-in simulator's): optional parts used when present."""
    return ColumnMapping(columns=dict(ROLES), locations={k: list(v) for k, v in NATIVE_LOCATIONS.items()},
                         distances=[["customer", "terminal"]], travel=["terminal"])


def _as_list(value, key: str, source) -> list:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        return [str(v) for v in value]
    raise DataValidationError(f"{source}: {key} must be a list of names, got {value!r}")


def _flag(value, key: str, source) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise DataValidationError(f"{source}: {key} must be true or false, got {value!r}")


def _apply(mapping: ColumnMapping, key: str, value, source) -> None:
    """Set one dotted ``key`` (TOML path or ``--map`` key) on ``mapping``."""
    head, _, rest = key.strip().lower().partition(".")
    if head == "columns" and rest:
        head, rest = rest, ""
    role = ALIASES.get(head, head)
    if role in ROLES and not rest:
        if not isinstance(value, str) or not value.strip():
            raise DataValidationError(f"{source}: {key} needs a column name, got {value!r}")
        mapping.columns[role] = value.strip()
        mapping.explicit.append(role)
    elif role == "channel" and rest in ("card_not_present", "card_present"):
        setattr(mapping, rest, _as_list(value, key, source))
    elif role == "label" and rest in ("fraud", "genuine"):
        setattr(mapping, f"label_{rest}", _as_list(value, key, source))
    elif head in ("location", "locations") and rest == "units":
        mapping.units = str(value).strip().lower()
    elif head in ("location", "locations") and rest in ("distances", "travel"):
        _apply(mapping, rest, value, source)
    elif head in ("location", "locations") and rest:
        mapping.locations[rest] = _as_list(value, key, source)
        mapping.explicit.append(f"location.{rest}")
    elif head == "distances":
        pairs = [p.split("-") for p in _as_list(value, key, source)] if isinstance(value, str) else value
        mapping.distances = [list(p) for p in pairs] if isinstance(pairs, list) else pairs
    elif head == "travel":
        mapping.travel = _as_list(value, key, source)
    elif head in ("categorical", "numeric") or (head == "features" and rest in ("categorical", "numeric")):
        setattr(mapping, rest or head, _as_list(value, key, source))
    elif head == "refunds" or (head == "amount" and rest == "refunds"):
        mapping.refunds = _flag(value, key, source)
    else:
        raise DataValidationError(f"{source}: unknown mapping key {key!r} (roles: "
                                  f"{', '.join(ROLES)}, merchant; see `unmask finance train --help`)")


def _flatten(table: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flatten(value, dotted + ".")
        else:
            out.append((dotted, value))
    return out


def build(schema_file=None, overrides=(), refunds: bool | None = None) -> ColumnMapping:
    """The mapping from unmask's own schema, then ``schema_file`` (TOML), then ``overrides``
    (``role=column`` strings from ``--map``); checked for consistency (one line if not)."""
    mapping = native()
    if schema_file is not None:
        path = Path(schema_file)
        try:
            table = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as err:
            raise DataValidationError(f"{path}: cannot read the schema file ({err})") from None
        except tomllib.TOMLDecodeError as err:
            raise DataValidationError(f"{path}: not valid TOML ({err})") from None
        for key, value in _flatten(table):
            _apply(mapping, key, value, path)
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise DataValidationError(f"--map {item!r}: give role=column (e.g. --map card=card_no)")
        _apply(mapping, key, value, "--map")
    if refunds is not None:
        mapping.refunds = bool(refunds)
    _forget_native_locations(mapping)
    mapping.explicit = sorted(set(mapping.explicit))
    problem = mapping.problem()
    if problem:
        raise DataValidationError(f"{schema_file or '--map'}: {problem}")
    return mapping


def _forget_native_locations(mapping: ColumnMapping) -> None:
    """Named locations replace unmask's own customer/terminal x/y (which a bank's file lacks)."""
    named = {e.removeprefix("location.") for e in mapping.explicit if e.startswith("location.")}
    if not named:
        return
    for name, cols in NATIVE_LOCATIONS.items():
        if name not in named and mapping.locations.get(name) == cols:
            del mapping.locations[name]
    mapping.distances = [p for p in mapping.distances if all(n in mapping.locations for n in p)]
    mapping.travel = [t for t in mapping.travel if t in mapping.locations]


def parse_cli(overrides) -> ColumnMapping:
    """``build`` from ``--map`` strings alone."""
    return build(None, overrides)

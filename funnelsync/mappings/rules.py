"""Segment rules: a RevOps admin's CEL expression (`[[segments]] when`) over one source row.

A rule is compiled once per run, against the columns the source returns, and then asked of
every row. Compiling refuses what would otherwise go wrong silently on every row: a rule that
does not parse, names a column the source does not have, calls a function that does not
exist, or plainly gives something other than true or false.

What a rule sees:
- each column it names, and `now`, the run's start as a timestamp (so a column named `now`
  cannot be read);
- `days_since(ts)`: the whole 24-hour periods from a timestamp to `now`, rounded down;
- CEL's standard functions (`size`, `int`, `double`, `string`, `timestamp`, `duration`,
  `matches`, `startsWith`, `contains`, `getFullYear`, ...).

Values, as CEL sees them:
- datetimes and dates are timestamps, in UTC when they carry no zone (a date is its midnight);
- ISO-8601 strings are timestamps in the columns the rule reads as timestamps: passed to
  `days_since()` or `timestamp()`, compared with or subtracted from `now` (or compared with a
  `timestamp(...)`), shifted by a `duration(...)`, or asked for a part
  (`signed_up_at.getDayOfWeek()`). Elsewhere a string is a string. A value in such a column
  that is not a date or time makes the rule false for that row;
- ints and floats stay what they are: the engine compares numbers by value across types
  (`used_event_count == 0`, `> 1000` hold for 0, 0.0 or Decimal("0")), while arithmetic
  follows CEL (an int and a double do not mix without `double(x)`);
- a Decimal is an int when it has no fractional digits by its scale (SUM of integer columns
  gives Decimal("42")) and a double otherwise (NUMERIC(10,2) gives Decimal("42.00")): its
  column's type, not the row's value, decides, so one rule never behaves differently by row.

A missing value never matches: when any column the rule reads is missing (None, NULL, or
absent from the row) the rule is false for that row, whatever the rule does with that column,
before CEL runs. This is stricter than CEL's own error-absorbing `||`, and easier to predict:
`a == 0 || b == 0` is false for a row where `b` is NULL. A rule that fails at run time for
another reason (comparing a string with a number, a non-bool result) is also false for that
row, never an exception: one contact's odd value must not stop the run.

The CEL engine is `common-expression-language` (Python bindings of the Rust `cel` crate): it
parses with the CEL grammar, has no access to Python beyond the values and the one function
given here, and evaluates a compiled program in a few microseconds.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import cel

from funnelsync.errors import FunnelsyncError
from funnelsync.mappings.values import ValueProblem, parse_timestamp

NOW: Final = "now"
DAYS_SINCE: Final = "days_since"
_DAY: Final = timedelta(days=1)
_INT64: Final = 2**63

# The functions the CEL engine provides and a rule may call, besides days_since. A name outside
# this set would fail on every row, so it is refused when the rule is compiled.
STANDARD_FUNCTIONS: Final = frozenset({
    "size", "int", "uint", "double", "string", "bytes", "dyn", "type",
    "timestamp", "duration",
    "matches", "startsWith", "endsWith", "contains",
    "getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear",
    "getHours", "getMinutes", "getSeconds", "getMilliseconds",
    "has", "all", "exists", "exists_one", "map", "filter",
})
_TIMESTAMP_PARTS: Final = frozenset(name for name in STANDARD_FUNCTIONS if name.startswith("get"))
_MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})
_COMPARE_OR_SUBTRACT: Final = frozenset({"<", "<=", ">", ">=", "==", "!=", "-"})

# Enough of CEL's lexical grammar to find which columns a rule uses as timestamps; the CEL
# parser remains the judge of whether the rule is valid.
_STRING = re.compile(
    r"""[rRbB]{0,2}(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")""",
    re.DOTALL,
)
_TOKEN = re.compile(
    r"(?P<string>\0)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<number>\d[\w.]*)"
    r"|(?P<op><=|>=|==|!=|&&|\|\||\S)"
)
# The CEL parser's error: "<input>:LINE:COLUMN: Syntax error: what went wrong".
_PARSE_ERROR = re.compile(r"<input>:(\d+):(\d+): (?:Syntax error: )?(.*)")
_SQL_HABITS: Final = {"=": "==", "<>": "!=", "and": "&&", "or": "||", "not": "!"}


class RuleError(FunnelsyncError, ValueError):
    """A segment rule that cannot be used; the message is for the admin who wrote it."""

    exit_status = 2

    def __init__(self, problem: str, expression: str, detail: str = "") -> None:
        self.problem = problem
        self.expression = expression
        self.detail = detail
        message = f"{problem} in `{expression}`" if expression.strip() else problem
        super().__init__(f"{message} ({detail})" if detail else message)


class _NotATimestamp:
    """What days_since() answers for a non-timestamp: CEL cannot take it, so that row's rule
    fails (and is false). Raising from the function instead would make the engine print the
    Python traceback for every such row."""


_NOT_A_TIMESTAMP: Final = _NotATimestamp()


def _days_since_function(now: datetime) -> Callable[[Any], Any]:
    def days_since(moment: Any) -> Any:
        if not isinstance(moment, datetime):
            return _NOT_A_TIMESTAMP
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return (now - moment) // _DAY

    return days_since


class _Missing:
    """A value the rule cannot use: the row does not match."""


_MISSING: Final = _Missing()


def _as_timestamp(value: Any) -> Any:
    if value is None or value == "":
        return _MISSING
    try:
        return parse_timestamp(value)
    except ValueProblem:
        return _MISSING


def _as_cel(value: Any) -> Any:
    if value is None:
        return _MISSING
    if isinstance(value, bool | int | float | str | bytes):
        return value
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= 0 and -_INT64 <= value < _INT64:
            return int(value)
        return float(value)
    if isinstance(value, datetime | date):
        return parse_timestamp(value)
    if isinstance(value, timedelta | list | tuple | dict):
        return value
    return str(value)  # e.g. a UUID: compared as its text


class Rule:
    """A compiled segment rule; one may be shared by threads."""

    __slots__ = ("_clock", "_program", "_reads", "_uses_days_since", "_uses_now", "columns",
                 "expression")

    def __init__(
        self,
        expression: str,
        program: cel.Program,
        columns: frozenset[str],
        timestamp_columns: frozenset[str],
        uses_now: bool,
        uses_days_since: bool,
    ) -> None:
        self.expression = expression
        self.columns = columns
        self._program = program
        self._reads = tuple(sorted((column, column in timestamp_columns) for column in columns))
        self._uses_now = uses_now  # binding a timestamp costs about a microsecond a row
        self._uses_days_since = uses_days_since
        # A run asks every row with the same `now`: convert it and build days_since once.
        self._clock: tuple[datetime, datetime, Callable[[Any], Any]] | None = None

    def __repr__(self) -> str:
        return f"Rule({self.expression!r})"

    def matches(self, row: Mapping[str, Any], now: datetime) -> bool:
        """Whether this row is in the segment at `now`, the run's start."""
        values: dict[str, Any] = {}
        for column, as_timestamp in self._reads:
            value = (_as_timestamp if as_timestamp else _as_cel)(row.get(column))
            if value is _MISSING:
                return False
            values[column] = value
        self._bind_now(values, now)
        try:
            result = self._program.execute(values)
        except Exception:  # the engine's errors are not typed: any of them means "no match"
            return False
        return result is True

    def _bind_now(self, values: dict[str, Any], now: datetime) -> None:
        clock = self._clock
        if clock is None or clock[0] is not now:
            moment = parse_timestamp(now)
            clock = self._clock = (now, moment, _days_since_function(moment))
        if self._uses_now:
            values[NOW] = clock[1]
        if self._uses_days_since:
            values[DAYS_SINCE] = clock[2]  # a callable in the activation is a CEL function


def compile_rule(expression: str, columns: Collection[str]) -> Rule:
    """Compile a segment's `when` against the columns the source returns; raises RuleError."""
    if not expression.strip():
        raise RuleError("the rule is empty", expression,
                        "write a condition such as `used_event_count == 0`")
    try:
        program = cel.compile(expression)
    except Exception as exc:  # the engine raises ValueError with the parser's report
        problem, hint = _parse_problem(str(exc), expression)
        raise RuleError(problem, expression, hint) from None

    tokens = list(_tokens(expression))
    known = frozenset(columns)
    read = set(program.variables()) - _comprehension_variables(tokens)
    names = read - {NOW}
    unknown = sorted(names - known)
    if unknown:
        raise RuleError(_unknown("column", unknown), expression, _columns_hint(unknown, known))
    functions = {name for name in program.functions() if not _is_operator(name)}
    unknown = sorted(functions - STANDARD_FUNCTIONS - {DAYS_SINCE})
    if unknown:
        raise RuleError(_unknown("function", unknown), expression,
                        f"a rule can call {DAYS_SINCE}() and CEL's {', '.join(_USABLE)}")

    rule = Rule(
        expression,
        program,
        columns=frozenset(names),
        timestamp_columns=_timestamp_columns(tokens, names),
        uses_now=NOW in read,
        uses_days_since=DAYS_SINCE in functions,
    )
    result = _result_kind_when_never_bool(rule)
    if result is not None:
        raise RuleError(f"gives {result}, not true or false,", expression,
                        "compare it, e.g. `used_event_count > 0`")
    return rule


def _is_operator(name: str) -> bool:
    # The engine names operators by their shape (`_&&_`, `!_`, `@in`): never a plain word.
    return re.fullmatch(r"\w+", name) is None


def _tokens(expression: str) -> Iterator[str]:
    """The rule's names and operators; every string literal becomes one "\0" token."""
    for match in _TOKEN.finditer(_STRING.sub("\0", expression)):
        yield match.group()


def _comprehension_variables(tokens: list[str]) -> set[str]:
    # `[1, 2].exists(x, x > 1)`: x is bound by the macro, not read from the row.
    return {
        tokens[i + 3]
        for i in range(len(tokens) - 4)
        if tokens[i] == "." and tokens[i + 1] in _MACROS and tokens[i + 2] == "("
        and tokens[i + 4] == ","
    }


def _timestamp_columns(tokens: list[str], names: Collection[str]) -> frozenset[str]:
    """The columns the rule reads as timestamps, so that ISO-8601 strings there become ones."""
    found = set()
    padded = ["", *tokens, "", "", ""]
    for i in range(1, len(tokens) + 1):
        before, name, after, after2 = padded[i - 1], padded[i], padded[i + 1], padded[i + 2]
        if name not in names or before == "." or after == "(":
            continue
        called = before == "(" and after == ")" and padded[i - 2] in (DAYS_SINCE, "timestamp")
        part = after == "." and after2 in _TIMESTAMP_PARTS
        with_now = (after in _COMPARE_OR_SUBTRACT and after2 in (NOW, "timestamp")) or (
            before in _COMPARE_OR_SUBTRACT and padded[i - 2] == NOW
        )
        shifted = after in ("+", "-") and after2 == "duration"
        if called or part or with_now or shifted:
            found.add(name)
    return frozenset(found)


# Values that stand in for every column when a rule is tried at compile time.
_PROBES: Final = (0, 0.5, "", False)
_PROBE_NOW: Final = datetime(2000, 1, 8, tzinfo=UTC)
_PROBE_TIMESTAMP: Final = datetime(2000, 1, 1, tzinfo=UTC)


def _result_kind_when_never_bool(rule: Rule) -> str | None:
    """What the rule gives if, tried with each kind of value, it never gives a bool.

    The engine has no type checker, so this tries the rule with every column set to a number,
    a text, a bool (timestamp columns to a timestamp). A rule that gives a bool for any of them,
    or fails for all (the types cannot be told), passes; its non-bool results at run time are
    false for that row.
    """
    results = []
    for probe in _PROBES:
        row = {column: _PROBE_TIMESTAMP if as_timestamp else probe
               for column, as_timestamp in rule._reads}
        values = {column: _as_cel(value) for column, value in row.items()}
        rule._bind_now(values, _PROBE_NOW)
        try:
            result = rule._program.execute(values)
        except Exception:
            continue
        if isinstance(result, bool):
            return None
        results.append(result)
    if not results:
        return None
    return _kind(results[0])


def _kind(value: Any) -> str:
    match value:
        case int() | float():
            return f"a number ({value})"
        case str():
            return f"a text ({value!r})"
        case datetime():
            return "a timestamp"
        case timedelta():
            return "a duration"
        case list() | tuple():
            return "a list"
        case dict():
            return "a map"
        case None:
            return "null"
    return f"a {type(value).__name__}"


def _unknown(noun: str, names: list[str]) -> str:
    return f"unknown {noun}{'s' if len(names) > 1 else ''} {', '.join(map(repr, names))}"


def _columns_hint(unknown: list[str], known: frozenset[str]) -> str:
    have = f"the source has: {', '.join(sorted(known))}" if known else "the source has no columns"
    close = [match for name in unknown for match in difflib.get_close_matches(name, known, n=1)]
    return f"did you mean {', '.join(map(repr, close))}? {have}" if close else have


_USABLE: Final = sorted(STANDARD_FUNCTIONS, key=str.lower)


def _parse_problem(report: str, expression: str) -> tuple[str, str]:
    """The parser's first complaint, in plain words and where it is; and a hint, if any."""
    match = _PARSE_ERROR.search(report)
    if match is None:
        return "does not parse", ""
    line, column, what = int(match.group(1)), int(match.group(2)), match.group(3).strip()
    what = re.sub(r"\s*expecting .*$", "", what)
    hint = ""
    word = re.search(r"(?:input|error at:) '(.*?)'?$", what)
    token = word.group(1).strip() if word else ""
    if "Recursion limit" in what:
        what = "the rule nests too deeply"
    elif token == "<EOF>":
        what = "the rule ends too early"
    elif token:
        lines = expression.splitlines() or [""]
        if token == ">" and lines[min(line, len(lines)) - 1][column - 2 : column - 1] == "<":
            token, column = "<>", column - 1
        what = f"unexpected {token!r}"
        if token in _SQL_HABITS:
            hint = f"CEL writes {_SQL_HABITS[token]!r}, not {token!r}"
    elif found := re.match(r"reserved identifier: (\w+)", what):
        what = f"{found.group(1)!r} is a reserved word"
    where = f"at position {column}" if line == 1 else f"at line {line}, position {column}"
    return f"does not parse: {what} {where}", hint


def columns_read(expression: str) -> frozenset[str]:
    """The columns a rule reads, before the source's columns are known; raises RuleError
    when it does not parse. (`compile_rule` does the full check at run start.)"""
    try:
        program = cel.compile(expression)
    except Exception as exc:
        problem, hint = _parse_problem(str(exc), expression)
        raise RuleError(problem, expression, hint) from None
    return frozenset(set(program.variables()) - _comprehension_variables(list(_tokens(expression))) - {NOW})

"""The Python tool: a restricted evaluator for the calls a model writes between
`<|python_start|>` and `<|python_end|>`. Pure Python, no torch; nothing here runs `eval` or `exec`.

    evaluate("'strawberry'.count('r')")  -> "3"
    evaluate("'-'.join('planet')")       -> "p-l-a-n-e-t"
    evaluate("open('/etc/passwd')")      -> "Error: function 'open' is not allowed"

A call is parsed with `ast` and walked by a small interpreter that knows only: literals (str,
int, float, bool, None, and lists/tuples of them), names assigned earlier in the call
(`w = 'book'; w.count('o')`), arithmetic (+ - * / // % **), comparisons, `and`/`or`/`not`,
indexing and slicing, the functions of FUNCTIONS and the methods of METHODS. Everything else
(imports, attributes that are not whitelisted method calls, underscores in names, keyword
arguments, comprehensions, lambdas, f-strings) is refused before anything runs. The value of
the last line is the output: a string as it is, anything else as its `repr`.

Why it holds: every check happens before the work it guards. The source is capped before it is
parsed (a 10 MB literal never reaches the parser), the tree's size and depth are capped before
it is walked (the walker recurses at most MAX_DEPTH deep), and each operation whose result could
be large is sized first: `**` and `*` on integers by bit length, `*` and `replace` and `join` on
strings by the length they would produce. Lists hold scalars only, so sharing cannot build an
exponentially large value. So each node costs at most about MAX_STR character operations, a
call at most MAX_NODES of them, and the deadline checked at each node is a backstop, not the
defence. Every failure is returned as one line, `Error: ...`: the tool output the model sees.
"""

import ast
import time
from collections.abc import Callable
from typing import Any

MAX_SOURCE = 1_000  # characters of a call, checked before parsing
MAX_NODES = 200  # syntax-tree nodes of a call
MAX_DEPTH = 32  # nesting of the syntax tree; the walker recurses this deep at most
MAX_STR = 10_000  # characters of any string value
MAX_LIST = 1_000  # elements of any list value
MAX_INT_BITS = 1_024  # bits of any integer value (about 308 decimal digits)
MAX_OUTPUT = 1_000  # characters of the output
TIME_LIMIT = 0.5  # seconds per call; each node is bounded, this is the backstop

SCALARS = (str, int, float, bool, type(None))


class ToolError(Exception):
    """A refused or failed call; its message becomes the tool output."""


def _len_result(value: Any) -> int:
    return len(_sequence(value, "len"))


def _scalar(value: Any, what: str) -> Any:
    if isinstance(value, list):
        raise ToolError(f"{what} needs a string or a number, not a list")
    return value


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": _len_result,
    "abs": abs,
    "min": min,
    "max": max,
    "str": lambda value: str(_scalar(value, "str")),
    "int": int,
    "list": list,
}
METHODS: dict[type, frozenset[str]] = {
    str: frozenset(
        {"count", "lower", "upper", "split", "replace", "join", "strip", "startswith", "endswith", "find"}
    ),
    list: frozenset({"count", "index"}),
}
BINARY_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}
COMPARE_OPS = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


def evaluate(source: str, time_limit: float = TIME_LIMIT) -> str:
    """The output of a call: its last expression's value, or `Error: ...` (never raises)."""
    try:
        tree = _parse(source)
        env: dict[str, Any] = {}
        deadline = time.monotonic() + time_limit
        value = None
        for statement in tree.body:
            value = _statement(statement, env, deadline)
        output = value if isinstance(value, str) else repr(value)
        if len(output) > MAX_OUTPUT:
            raise ToolError(f"output of {len(output)} characters exceeds {MAX_OUTPUT}")
        return output
    except ToolError as exc:
        return f"Error: {exc}"
    except Exception as exc:  # any failure of an allowed operation: division by zero, a bad index
        return f"Error: {type(exc).__name__}: {_one_line(str(exc))}"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def _parse(source: str) -> ast.Module:
    """The call's syntax tree, refused when the source, the tree or its nesting is too big."""
    if not isinstance(source, str):
        raise ToolError("the call is not text")
    if len(source) > MAX_SOURCE:
        raise ToolError(f"call of {len(source)} characters exceeds {MAX_SOURCE}")
    try:
        tree = ast.parse(source, mode="exec")
    except SyntaxError as exc:
        raise ToolError(f"SyntaxError: {exc.msg}") from None
    if not tree.body:
        raise ToolError("empty call")
    _check_shape(tree)
    return tree


def _check_shape(tree: ast.AST) -> None:
    """Count nodes and measure depth without recursion, so a deep tree cannot overflow the stack."""
    nodes, stack = 0, [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ToolError(f"call has more than {MAX_NODES} syntax nodes")
        if depth > MAX_DEPTH:
            raise ToolError(f"call is nested deeper than {MAX_DEPTH}")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _statement(node: ast.stmt, env: dict[str, Any], deadline: float) -> Any:
    """An assignment `name = expr` (value None) or an expression (its value)."""
    if isinstance(node, ast.Assign):
        if len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
            raise ToolError("only `name = value` assignments are allowed")
        env[_name(node.targets[0].id)] = _eval(node.value, env, deadline)
        return None
    if isinstance(node, ast.Expr):
        return _eval(node.value, env, deadline)
    raise ToolError(f"{type(node).__name__} statements are not allowed")


def _name(name: str) -> str:
    if "_" in name:
        raise ToolError(f"name {name!r}: names with underscores are not allowed")
    return name


def _eval(node: ast.expr, env: dict[str, Any], deadline: float) -> Any:
    """The value of one expression node, checked against the size caps."""
    if time.monotonic() > deadline:
        raise ToolError("time limit exceeded")
    handler = EXPRESSIONS.get(type(node))
    if handler is None:
        raise ToolError(f"{type(node).__name__} is not allowed")
    return _checked(handler(node, env, deadline))


def _checked(value: Any) -> Any:
    """`value` if it is a scalar or a list of scalars within the caps; refuse anything else."""
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, list):
        if len(value) > MAX_LIST:
            raise ToolError(f"list of {len(value)} elements exceeds {MAX_LIST}")
        if not all(isinstance(v, SCALARS) and _checked(v) is v for v in value):
            raise ToolError("lists may hold only strings, numbers, booleans and None")
        chars = sum(len(v) for v in value if isinstance(v, str))
        if chars > MAX_STR:  # so `repr` of a list stays small too
            raise ToolError(f"list of {chars} characters exceeds {MAX_STR}")
        return value
    if isinstance(value, str) and len(value) > MAX_STR:
        raise ToolError(f"string of {len(value)} characters exceeds {MAX_STR}")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError(f"integer of {value.bit_length()} bits exceeds {MAX_INT_BITS}")
    if not isinstance(value, SCALARS):
        raise ToolError(f"values of type {type(value).__name__} are not allowed")
    return value


def _constant(node: ast.Constant, env, deadline) -> Any:
    if not isinstance(node.value, SCALARS):
        raise ToolError(f"{type(node.value).__name__} literals are not allowed")
    return node.value


def _sequence_literal(node: ast.List | ast.Tuple, env, deadline) -> list:
    return [_eval(e, env, deadline) for e in node.elts]


def _lookup(node: ast.Name, env, deadline) -> Any:
    name = _name(node.id)
    if name not in env:
        raise ToolError(f"name {name!r} is not defined")
    return env[name]


def _unary(node: ast.UnaryOp, env, deadline) -> Any:
    value = _eval(node.operand, env, deadline)
    if isinstance(node.op, ast.Not):
        return not value
    if isinstance(node.op, (ast.USub, ast.UAdd)) and isinstance(value, (int, float)):
        return -value if isinstance(node.op, ast.USub) else +value
    raise ToolError(f"{type(node.op).__name__} is not allowed on {type(value).__name__}")


def _binary(node: ast.BinOp, env, deadline) -> Any:
    op = BINARY_OPS.get(type(node.op))
    if op is None:
        raise ToolError(f"operator {type(node.op).__name__} is not allowed")
    a, b = _eval(node.left, env, deadline), _eval(node.right, env, deadline)
    _check_operands(node.op, a, b)
    return op(a, b)


def _check_operands(op: ast.operator, a: Any, b: Any) -> None:
    """Refuse an operation before computing it when its result would exceed a cap."""
    numbers = isinstance(a, (int, float)) and isinstance(b, (int, float))
    if isinstance(op, ast.Add):
        if not (numbers or type(a) is type(b)):
            raise ToolError(f"cannot add {type(a).__name__} and {type(b).__name__}")
        return
    if isinstance(op, ast.Mult):
        if numbers:
            if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS:
                raise ToolError(f"product would exceed {MAX_INT_BITS} bits")
            return
        seq, times = (a, b) if isinstance(b, int) else (b, a)
        if not isinstance(times, int) or not isinstance(seq, (str, list)):
            raise ToolError(f"cannot multiply {type(a).__name__} and {type(b).__name__}")
        cap = MAX_STR if isinstance(seq, str) else MAX_LIST
        if len(seq) * max(times, 0) > cap:
            raise ToolError(f"repetition would make {len(seq) * times} elements, over {cap}")
        return
    if not numbers:  # -, /, //, %, ** only on numbers: no `'%s' % x` formatting
        raise ToolError(f"operator {type(op).__name__} needs numbers")
    if isinstance(op, ast.Pow) and isinstance(a, int) and isinstance(b, int) and b > 0:
        # |a|**b has at least (bits(a) - 1) * b bits: refused when that is over the cap, so a
        # power that is computed has at most twice the cap's bits before `_checked` sees it.
        if (a.bit_length() - 1) * b > MAX_INT_BITS:
            raise ToolError(f"power would exceed {MAX_INT_BITS} bits")


def _compare(node: ast.Compare, env, deadline) -> bool:
    left = _eval(node.left, env, deadline)
    for op, right_node in zip(node.ops, node.comparators, strict=True):
        right = _eval(right_node, env, deadline)
        if not COMPARE_OPS[type(op)](left, right):
            return False
        left = right
    return True


def _boolean(node: ast.BoolOp, env, deadline) -> Any:
    value = None
    for operand in node.values:
        value = _eval(operand, env, deadline)
        if bool(value) == isinstance(node.op, ast.Or):  # short-circuits like Python
            return value
    return value


def _subscript(node: ast.Subscript, env, deadline) -> Any:
    value = _sequence(_eval(node.value, env, deadline), "indexing")
    if isinstance(node.slice, ast.Slice):
        parts = (node.slice.lower, node.slice.upper, node.slice.step)
        bounds = [None if p is None else _eval(p, env, deadline) for p in parts]
        if not all(b is None or isinstance(b, int) for b in bounds):
            raise ToolError("slice bounds must be integers")
        return value[slice(*bounds)]
    index = _eval(node.slice, env, deadline)
    if not isinstance(index, int):
        raise ToolError("indices must be integers")
    return value[index]


def _sequence(value: Any, what: str) -> str | list:
    if not isinstance(value, (str, list)):
        raise ToolError(f"{what} needs a string or a list, not {type(value).__name__}")
    return value


def _call(node: ast.Call, env, deadline) -> Any:
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        raise ToolError("keyword and starred arguments are not allowed")
    if isinstance(node.func, ast.Name):
        function = FUNCTIONS.get(node.func.id)
        if function is None:
            raise ToolError(f"function {node.func.id!r} is not allowed")
        return function(*[_eval(a, env, deadline) for a in node.args])
    if isinstance(node.func, ast.Attribute):
        return _method(node.func, [_eval(a, env, deadline) for a in node.args], env, deadline)
    raise ToolError("only whitelisted functions and methods can be called")


def _method(func: ast.Attribute, args: list, env, deadline) -> Any:
    name = _name(func.attr)
    receiver = _eval(func.value, env, deadline)
    if name not in METHODS.get(type(receiver), frozenset()):
        raise ToolError(f"method {name!r} is not allowed on {type(receiver).__name__}")
    if isinstance(receiver, str):
        _check_string_method(receiver, name, args)
    return getattr(receiver, name)(*args)


def _check_string_method(s: str, name: str, args: list) -> None:
    """Size `replace` and `join` results before they are built."""
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        hits = s.count(args[0]) if args[0] else len(s) + 1
        if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
            hits = min(hits, args[2])
        if len(s) + hits * (len(args[1]) - len(args[0])) > MAX_STR:
            raise ToolError(f"replace would make a string over {MAX_STR} characters")
    if name == "join" and len(args) == 1 and isinstance(args[0], (str, list)):
        if len(s) * max(len(args[0]) - 1, 0) + sum(len(str(x)) for x in args[0]) > MAX_STR:
            raise ToolError(f"join would make a string over {MAX_STR} characters")


EXPRESSIONS: dict[type, Callable[[Any, dict, float], Any]] = {
    ast.Constant: _constant,
    ast.List: _sequence_literal,
    ast.Tuple: _sequence_literal,
    ast.Name: _lookup,
    ast.UnaryOp: _unary,
    ast.BinOp: _binary,
    ast.Compare: _compare,
    ast.BoolOp: _boolean,
    ast.Subscript: _subscript,
    ast.Call: _call,
}

"""A safe evaluator for a multi grader's ``calculate_output`` formula.

The formula is parsed with ``ast`` and checked node by node; only numbers, variables, ``+ - * / ^ **``
(``^`` is a power, as in OpenAI's guide), unary signs, parentheses and the functions ``min max abs
floor ceil exp sqrt log`` are allowed. The checked tree is evaluated by ``simpleeval`` (never Python's
``eval``), with only those operators and functions, and only the node kinds the check lets through.
All arithmetic is in floats, so no formula can build a huge integer; overflow and domain errors are
reported as ``FormulaError``.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping

from simpleeval import InvalidExpression, SimpleEval

MAX_LENGTH = 2000
MAX_NODES = 500

FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": lambda *a: min(a),
    "max": lambda *a: max(a),
    "abs": abs,
    "floor": lambda x: float(math.floor(x)),
    "ceil": lambda x: float(math.ceil(x)),
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
}
_ARITY = {"abs": (1, 1), "floor": (1, 1), "ceil": (1, 1), "exp": (1, 1), "sqrt": (1, 1), "log": (1, 2)}
_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: math.pow,
    ast.BitXor: math.pow,
}


def _in_floats(f: Callable[[float, float], float]) -> Callable[[float, float], float]:
    # A number literal is parsed as an int: operands become floats before each operation.
    return lambda a, b: f(float(a), float(b))


_OPERATORS: dict[type[ast.AST], Callable[..., float]] = {
    **{op: _in_floats(f) for op, f in _BINARY.items()},
    ast.USub: lambda a: -float(a),
    ast.UAdd: float,
}
_NODES = (ast.Expr, ast.Name, ast.Constant, ast.UnaryOp, ast.BinOp, ast.Call)
"""What the evaluator may meet; ``parse`` refuses every other kind already."""


class FormulaError(ValueError):
    """The formula cannot be parsed, or cannot be computed."""


class UnknownVariable(FormulaError):
    """The formula names a variable that is not a grader of the multi grader."""


def parse(formula: str) -> ast.Expression:
    """The checked syntax tree of ``formula``.

    Raises:
        FormulaError: a syntax error, a construct that is not allowed, or a formula too long.
    """
    if len(formula) > MAX_LENGTH:
        raise FormulaError(f"The formula is longer than {MAX_LENGTH} characters.")
    try:
        tree = ast.parse(formula.strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"The formula is not valid: {exc.msg}.") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise FormulaError("The formula is too complex.")
    for node in nodes:
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise FormulaError(f"Unknown function in formula; allowed: {', '.join(FUNCTIONS)}.")
            if node.keywords:
                raise FormulaError("Formula functions take no keyword arguments.")
            low, high = _ARITY.get(node.func.id, (1, 64))
            if not low <= len(node.args) <= high:
                raise FormulaError(f"{node.func.id}() takes {low}-{high} arguments.")
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise FormulaError("Formulas may only contain numbers, grader names and operators.")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise FormulaError("Formulas may use only + - * / ^ as operators.")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.UAdd | ast.USub):
                raise FormulaError("Formulas may use only + and - as unary operators.")
        elif not isinstance(node, ast.Expression | ast.Name | ast.Load | ast.operator | ast.unaryop):
            raise FormulaError(f"Formulas may not contain {type(node).__name__} expressions.")
    return tree


def variables(tree: ast.Expression) -> set[str]:
    """The variable names a parsed formula reads (function names excluded)."""
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called}


def evaluate(formula: str | ast.Expression, values: Mapping[str, float]) -> float:
    """The value of ``formula`` with ``values`` bound to its variables.

    Raises:
        UnknownVariable: a variable is not in ``values``.
        FormulaError: the formula is invalid, or the result is not a finite number.
    """
    tree = parse(formula) if isinstance(formula, str) else formula

    # A function, not a dict: simpleeval would read an unbound name that is also a function's as that function.
    def variable(node: ast.Name) -> float:
        if node.id not in values:
            raise UnknownVariable(f"The formula uses '{node.id}', which is not one of the graders.")
        return float(values[node.id])

    evaluator = SimpleEval(operators=_OPERATORS, functions=FUNCTIONS, names=variable)
    evaluator.nodes = {kind: evaluator.nodes[kind] for kind in _NODES}
    try:
        result = float(evaluator.eval("", previously_parsed=ast.Expr(tree.body)))
    except FormulaError:
        raise
    except (OverflowError, ZeroDivisionError, ValueError, TypeError, InvalidExpression) as exc:
        raise FormulaError(f"The formula cannot be computed: {exc}.") from None
    if not math.isfinite(result):
        raise FormulaError("The formula's result is not a finite number.")
    return result

"""Cyclomatic complexity of Python functions, from the AST (McCabe: 1 + decision points)."""

from __future__ import annotations

import ast
from dataclasses import dataclass

# Nodes that add one path each. Nested functions and classes are measured on their own.
_BRANCHES = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.IfExp, ast.ExceptHandler, ast.Assert)
_NESTED_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


@dataclass(frozen=True)
class FunctionComplexity:
    qualname: str
    start_line: int  # first decorator or the def line
    end_line: int
    complexity: int


def cyclomatic_complexity(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    score = 1
    pending: list[ast.AST] = list(ast.iter_child_nodes(function))
    while pending:
        node = pending.pop()
        if isinstance(node, _NESTED_SCOPES):
            continue
        if isinstance(node, _BRANCHES):
            score += 1
        elif isinstance(node, ast.BoolOp):
            score += len(node.values) - 1  # `a and b and c` is two short-circuit branches
        elif isinstance(node, ast.comprehension):
            score += 1 + len(node.ifs)
        elif isinstance(node, ast.match_case):
            score += 1
        elif isinstance(node, ast.Try | ast.TryStar):
            score += bool(node.orelse)
        pending.extend(ast.iter_child_nodes(node))
    return score


def function_complexities(tree: ast.Module) -> list[FunctionComplexity]:
    """Every function and method in the module (nested ones too), with its complexity."""
    found: list[FunctionComplexity] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = f"{prefix}{child.name}"
                start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                end = child.end_lineno or child.lineno
                found.append(FunctionComplexity(qualname, start, end, cyclomatic_complexity(child)))
                visit(child, f"{qualname}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found

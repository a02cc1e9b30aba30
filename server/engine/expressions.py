"""Expression dialects of the modelling tools, translated once (at parse time) into the Python the
sandboxed evaluator runs: JUEL ``${...}`` (Camunda 7, Activiti, Flowable), FEEL ``=...`` (Camunda 8 /
Zeebe) and plain Java-style expressions (``amount > 1000 && approved``, ``"a".equals(status)``).

Only a small, well-defined subset is understood — literals, names, ``a.b`` and ``a[i]`` access,
comparisons, ``and``/``or``/``not`` in each dialect's spelling, arithmetic, JUEL's ``empty`` and
``?:``, FEEL ranges and lists with ``in`` (``x in [1..10]``, ``x in ("a", "b")``), ``between``,
``if … then … else``, and calls of registered functions. Anything else is an
:class:`UntranslatableExpression` whose message says what and at which column, so the deploy is
refused at that element rather than failing later at run time.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

__all__ = ["UntranslatableExpression", "to_python"]


class UntranslatableExpression(ValueError):
    """An expression in a tool's dialect that Flowdesk cannot translate; ``column`` is 1-based."""

    def __init__(self, message: str, column: int | None = None):
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class _Token:
    kind: str  # num, str, name, op, end
    text: str
    pos: int
    value: object = None


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[lLdDfF]?|\.\d+)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_$][\w$]*)
  | (?P<op>\.\.|&&|\|\||==|!=|<=|>=|\*\*|[-+*/%<>=!?:.,()\[\]{}])
""", re.VERBOSE)

# Helpers the translations call (defined in .scripting): null-safe property access and comparison.
GET, COMPARE = "flowdesk_get", "flowdesk_compare"
_JUEL_WORDS = {"eq": "==", "ne": "!=", "lt": "<", "gt": ">", "le": "<=", "ge": ">=", "div": "/", "mod": "%"}
_COMPARISONS = ("==", "!=", "<", ">", "<=", ">=")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


def _compare(left: str, op: str, right: str) -> str:
    return f"{COMPARE}({left}, {op!r}, {right})"


def _tokens(text: str) -> list[_Token]:
    out, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise UntranslatableExpression(f"unexpected character '{text[pos]}'", pos + 1)
        kind = match.lastgroup
        value = match.group()
        if kind == "str":
            body = value[1:-1]
            value_ = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)
            out.append(_Token("str", value, pos, value_))
        elif kind == "num":
            out.append(_Token("num", value, pos, value.rstrip("lLdDfF")))
        elif kind != "space":
            out.append(_Token(kind, value, pos))
        pos = match.end()
    out.append(_Token("end", "", len(text)))
    return out


class _Parser:
    """Recursive descent over one expression; each method returns Python source (parenthesised)."""

    def __init__(self, text: str, dialect: str, offset: int):
        self.tokens = _tokens(text)
        self.i = 0
        self.feel = dialect == "feel"
        self.offset = offset  # column of the expression's first character inside the element text

    # -- helpers -------------------------------------------------------------
    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def _fail(self, message: str, token: _Token | None = None):
        token = token or self.tok
        raise UntranslatableExpression(message, self.offset + token.pos + 1)

    def _is(self, *texts: str) -> bool:
        return self.tok.kind in ("op", "name") and self.tok.text in texts

    def _take(self, *texts: str) -> _Token | None:
        if self._is(*texts):
            token = self.tok
            self.i += 1
            return token
        return None

    def _expect(self, text: str) -> None:
        if not self._take(text):
            found = self.tok.text or "the end"
            self._fail(f"expected '{text}' but found '{found}'")

    # -- grammar -------------------------------------------------------------
    def parse(self) -> str:
        result = self.expression()
        if self.tok.kind != "end":
            self._fail(f"unexpected '{self.tok.text}'")
        return result

    def expression(self) -> str:
        if self.feel and self._take("if"):
            condition = self.expression()
            self._expect("then")
            then = self.expression()
            self._expect("else")
            return f"({then} if {condition} else {self.expression()})"
        condition = self.disjunction()
        if not self.feel and self._take("?"):
            then = self.expression()
            self._expect(":")
            return f"({then} if {condition} else {self.expression()})"
        return condition

    def disjunction(self) -> str:
        left = self.conjunction()
        while self._take("||", "or"):
            left = f"({left} or {self.conjunction()})"
        return left

    def conjunction(self) -> str:
        left = self.negation()
        while self._take("&&", "and"):
            left = f"({left} and {self.negation()})"
        return left

    def negation(self) -> str:
        if not self.feel and self._take("!", "not"):
            return f"(not {self.negation()})"
        if not self.feel and self._take("empty"):
            return f"(not {self.negation()})"
        return self.comparison()

    def comparison(self) -> str:
        left = self.additive()
        if self.feel and self._take("in"):
            return self.membership(left)
        if self.feel and self._take("between"):
            low = self.additive()
            self._expect("and")
            return f"({_compare(left, '>=', low)} and {_compare(left, '<=', self.additive())})"
        token = self.tok
        op = None
        if token.kind == "op" and token.text in _COMPARISONS + ("=",):
            op = "==" if token.text == "=" else token.text
            if token.text == "=" and not self.feel:
                self._fail("'=' assigns; compare with '=='")
        elif token.kind == "name" and not self.feel and token.text in _JUEL_WORDS and \
                _JUEL_WORDS[token.text] in _COMPARISONS:
            op = _JUEL_WORDS[token.text]
        if op is None:
            return left
        self.i += 1
        return _compare(left, op, self.additive())

    def membership(self, value: str) -> str:
        """FEEL ``x in [1..10]``, ``x in (1..10]``, ``x in ]1..10[``, ``x in ["a", "b"]``, ``x in ("a", "b")``."""
        opening = self._take("[", "(", "]")
        if opening is None:
            return f"({value} in {self.additive()})"
        first = self.additive()
        if self._take(".."):
            last = self.additive()
            closing = self._take("]", ")", "[")
            if closing is None:
                self._fail("a range ends with ']' or ')'")
            low = ">=" if opening.text == "[" else ">"
            high = "<=" if closing.text == "]" else "<"
            return f"({_compare(value, low, first)} and {_compare(value, high, last)})"
        items = [first]
        while self._take(","):
            items.append(self.additive())
        self._expect("]" if opening.text == "[" else ")")
        return f"({value} in ({', '.join(items)},))"

    def additive(self) -> str:
        left = self.multiplicative()
        while self._is("+", "-"):
            op = self._take("+", "-").text
            left = f"({left} {op} {self.multiplicative()})"
        return left

    def multiplicative(self) -> str:
        left = self.unary()
        while self._is("*", "/", "%") or (not self.feel and self._is("div", "mod")):
            op = self.tok.text
            self.i += 1
            left = f"({left} {_JUEL_WORDS.get(op, op)} {self.unary()})"
        return left

    def unary(self) -> str:
        if self._take("-"):
            return f"(-{self.unary()})"
        if self._take("+"):
            return self.unary()
        base = self.postfix()
        if self.feel and self._take("**"):
            return f"({base} ** {self.unary()})"
        return base

    def postfix(self) -> str:
        start = self.tok
        result = self.primary()
        if start.kind in ("num", "str") and not self._is("."):
            return result  # ``]1..5[``: a bracket after a number closes a range, it does not index
        while True:
            if self._take("."):
                name = self.tok
                if name.kind != "name":
                    self._fail("expected a property name after '.'")
                self.i += 1
                result = self.method(result, name) if self._is("(") else f"{GET}({result}, {name.text!r})"
            elif self._take("["):
                index = self.expression()
                self._expect("]")
                result = f"{GET}({result}, {index})"
            elif self._is("(") and start.kind == "name" and result == start.text:
                self.i += 1
                args = self.arguments()
                result = self.call(start, args)
            else:
                return result

    def arguments(self) -> list[str]:
        args = []
        if not self._take(")"):
            args.append(self.expression())
            while self._take(","):
                args.append(self.expression())
            self._expect(")")
        return args

    def method(self, target: str, name: _Token) -> str:
        """The few Java methods expressions use for comparisons, with their Python meaning."""
        self._expect("(")
        args = self.arguments()
        if name.text == "getVariable" and target == "execution" and len(args) == 1:
            literal = ast.literal_eval(args[0]) if args[0][:1] in "'\"" else None
            if isinstance(literal, str) and literal.isidentifier():
                return literal
        if name.text == "equals" and len(args) == 1:
            return _compare(target, "==", args[0])
        if name.text == "equalsIgnoreCase" and len(args) == 1:
            return f"(str({target}).lower() == str({args[0]}).lower())"
        if name.text in ("isEmpty", "length", "size") and not args:
            return f"(len({target}) == 0)" if name.text == "isEmpty" else f"len({target})"
        if name.text == "contains" and len(args) == 1:
            return f"({args[0]} in {target})"
        self._fail(f"the method '{name.text}()' is not supported in expressions", name)
        return ""  # unreachable

    def call(self, name: _Token, args: list[str]) -> str:
        if self.feel and name.text in ("duration", "date", "time") and len(args) == 1:
            return args[0]  # ISO text: the timer or comparison reads it as such
        return f"{name.text}({', '.join(args)})"

    def primary(self) -> str:
        token = self.tok
        if token.kind == "num":
            self.i += 1
            return token.value
        if token.kind == "str":
            if self.feel and token.text.startswith("'"):
                self._fail("FEEL strings use double quotes")
            self.i += 1
            return repr(token.value)
        if token.kind == "name":
            self.i += 1
            if self.feel and token.text == "not" and self._is("("):
                self.i += 1
                args = self.arguments()
                if len(args) != 1:
                    self._fail("not() takes one condition", token)
                return f"(not {args[0]})"
            if token.text in ("true", "false"):
                return "True" if token.text == "true" else "False"
            if token.text == "null":
                return "None"
            if self.feel and token.text == "date" and self._is("and"):
                # ``date and time("…")``: FEEL's name of the date-time constructor, spelt with spaces.
                self._expect("and")
                if self.tok.text != "time":
                    self._fail("expected 'date and time(...)'")
                self.i += 1
                self._expect("(")
                args = self.arguments()
                if len(args) != 1:
                    self._fail("date and time() takes one text")
                return args[0]
            if token.text.startswith("$") or not token.text.isidentifier() or token.text in _PY_KEYWORDS:
                self._fail(f"the name '{token.text}' cannot be used in expressions", token)
            return token.text
        if self._take("("):
            inner = self.expression()
            self._expect(")")
            return inner
        if self.feel and self._take("["):
            items = [] if self._is("]") else [self.expression()]
            while self._take(","):
                items.append(self.expression())
            self._expect("]")
            return f"[{', '.join(items)}]"
        self._fail(f"unexpected '{token.text or 'end of the expression'}'")
        return ""  # unreachable


_PY_KEYWORDS = frozenset({"lambda", "import", "class", "def", "del", "global", "nonlocal", "yield", "await",
                          "async", "from", "as", "with", "try", "except", "finally", "raise", "return", "pass",
                          "break", "continue", "while", "for", "is", "elif", "assert", "in", "if", "else",
                          "and", "or", "not"})
_JUEL = re.compile(r"^\s*[$#]\{(.*)\}\s*$", re.DOTALL)


def dialect_of_expression(text: str) -> str:
    """'juel' for ``${…}``/``#{…}``, 'feel' for ``=…``, else 'plain'."""
    if _JUEL.match(text):
        return "juel"
    return "feel" if text.lstrip().startswith("=") else "plain"


# Method names no Python value has: text calling them is Java written as a plain expression.
_JAVA_METHODS = frozenset({"equals", "equalsIgnoreCase", "isEmpty", "getVariable", "length", "size", "contains"})


def _python_tree(text: str, keep: frozenset[str]) -> ast.Expression | None:
    """The expression's tree if it is Python as written (and calls no Java-only method), else None.
    A Java static call (``Long.valueOf(…)``, ``Math.abs(…)``) is refused: it would only fail at run time."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in _JAVA_METHODS:
            return None
        callee = node.func if isinstance(node, ast.Call) else None
        if (isinstance(callee, ast.Attribute) and isinstance(callee.value, ast.Name)
                and callee.value.id[:1].isupper() and callee.value.id not in keep):
            raise UntranslatableExpression(f"'{node.func.value.id}.{node.func.attr}(…)' is a Java call, which "
                                           "Flowdesk does not run", node.col_offset + 1)
    return tree


class _PropertyAccess(ast.NodeTransformer):
    """``loan.amount`` on process data (JSON objects, i.e. dicts) means ``loan["amount"]``, as in JUEL, FEEL
    and Groovy; names of the script helpers (``math.floor``) and method calls (``name.lower()``) stay."""

    def __init__(self, keep: frozenset[str]):
        self.keep = keep
        self.changed = False

    def visit_Call(self, node: ast.Call):
        if isinstance(node.func, ast.Attribute):  # a method: leave the callee, rewrite inside its target
            node.func.value = self.visit(node.func.value)
            node.args = [self.visit(a) for a in node.args]
            node.keywords = [self.visit(k) for k in node.keywords]
            return node
        return self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute):
        root = node
        while isinstance(root, ast.Attribute):
            root = root.value
        if not isinstance(root, ast.Name | ast.Subscript) or (isinstance(root, ast.Name) and root.id in self.keep):
            return self.generic_visit(node)
        self.changed = True
        call = ast.Call(func=ast.Name(GET, ast.Load()), args=[self.visit(node.value), ast.Constant(node.attr)],
                        keywords=[])
        return ast.copy_location(call, node)

    def visit_Compare(self, node: ast.Compare):
        node = self.generic_visit(node)
        if not self.changed or len(node.ops) != 1 or type(node.ops[0]) not in _AST_COMPARISONS:
            return node
        call = ast.Call(func=ast.Name(COMPARE, ast.Load()),
                        args=[node.left, ast.Constant(_AST_COMPARISONS[type(node.ops[0])]), node.comparators[0]],
                        keywords=[])
        return ast.copy_location(call, node)


_AST_COMPARISONS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}


def to_python(text: str, keep_names: frozenset[str] = frozenset()) -> tuple[str, str]:
    """Translate an expression to Python; returns ``(python, dialect)``. Plain text that is already
    Python stays as written, but for ``data.field`` access (``keep_names``: helper names whose attributes
    are real). Raises :class:`UntranslatableExpression` with a column."""
    dialect = dialect_of_expression(text)
    if dialect == "juel":
        match = _JUEL.match(text)
        body = match.group(1)
        if "${" in body or "#{" in body:
            raise UntranslatableExpression("only one ${...} expression is allowed here", text.find("}") + 2)
        return _Parser(body, "juel", match.start(1)).parse(), dialect
    if dialect == "feel":
        start = text.index("=") + 1
        return _Parser(text[start:], "feel", start).parse(), dialect
    tree = _python_tree(text, keep_names)
    if tree is not None:
        rewriter = _PropertyAccess(keep_names)
        tree = rewriter.visit(tree)
        return (ast.unparse(tree) if rewriter.changed else text.strip()), dialect
    return _Parser(text, "plain", 0).parse(), "java"

"""Read a user's own PySpark transformation into an imported family (no Spark, no execution).

``cosmocore tasks import FILE.py`` starts here. The file is *parsed*, never imported: it is the
user's code, and importing it would run whatever its module level does (start sessions, read
tables) in the CLI's process. From the parse tree this module

1. finds the function (``--function``, else the only one that takes or returns a DataFrame,
   else the only public one),
2. rewrites it to the sandbox's dialect: named ``transform``, pyspark reached only through ``F``,
   ``T`` and ``Window`` (``from pyspark.sql.functions import col`` becomes ``F.col``), module-level
   literal constants and literal parameter defaults inlined, a ``spark`` parameter dropped (the
   sandbox provides ``spark``), the docstring moved out into the task's spec;
3. refuses what the sandbox cannot run, before any Spark starts, with one line naming the file,
   the line and what to change (RDD API, I/O, helpers defined outside the function...);
4. infers each DataFrame parameter's schema, in this order: ``--sample ARG=FILE`` (real data,
   read with pyarrow in this process: it is the user's own, trusted file), a type hint
   ``Annotated[DataFrame, "col TYPE, ..."]``, a docstring line ``ARG: col TYPE, ...`` or a
   doctest ``ARG = spark.createDataFrame([...], "col TYPE, ...")`` (whose rows become samples);
5. reads hints for the data generator off the code (:mod:`miniworld.suites.code_hints`) and the
   output's key columns and ordering, and generates the datasets (:mod:`miniworld.suites.datagen`).

The Spark half (verification, keeping observable mutants, writing the suite) is in
:mod:`miniworld.suites.user_suites`.
"""
from __future__ import annotations

import ast
import builtins
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import pipelines
from miniworld.sandbox import gate
from miniworld.suites import code_hints, datagen
from miniworld.suites.bugs import parse_ddl
from miniworld.suites.suite import SuiteError
from miniworld.suites.imported import ImportedFamily


class PipelineImportError(SuiteError):
    """A file or function that cannot become tasks (one line: what, where, what to do)."""


@dataclass
class Analysis:
    """What the importer learned from the file, before any data exists."""

    family: str
    function: str
    reference: str  # ``def transform(...)`` in the sandbox's dialect
    inputs: dict[str, str]  # parameter -> DDL
    schema_sources: dict[str, str]  # parameter -> "sample" | "type hint" | "docstring"
    spec: str
    keys: list[str]
    ordered: bool
    hints: datagen.Hints = field(default_factory=datagen.Hints)


# -- entry point ---------------------------------------------------------------------------
def analyse(path: Path, function: str | None = None, samples: dict[str, Path] | None = None) -> Analysis:
    """Parse ``path`` and turn one of its functions into an :class:`Analysis` (or raise)."""
    text, tree = _parse(path)
    func = _pick_function(tree, function, path)
    where = f"{path.name}:{func.name}"
    aliases, constants = _module_names(tree)
    params, defaults = _parameters(func, constants, where)
    docstring = ast.get_docstring(func) or ""
    inputs, sources, sample_rows = _schemas(func, params, docstring, samples or {}, where)
    _check_returns(func, where)
    _check_policy(ast.get_source_segment(text, func) or ast.unparse(func), func.lineno, where)
    reference = _rewrite(func, aliases, {**constants, **defaults}, params)
    _check_policy(reference, func.lineno, where)  # the rewrite adds no reach; checked all the same
    _check_free_names(func, set(aliases) | set(constants) | set(defaults), where)
    ref_func = ast.parse(reference).body[0]
    hints = code_hints.data_hints(ref_func, inputs)
    hints.samples = sample_rows
    return Analysis(_family_name(func.name), func.name, reference, inputs, sources, _spec(docstring, func.name, path),
                    code_hints.output_keys(ref_func), code_hints.ordered(ref_func), hints)


def build_family(analysis: Analysis, origin: str, seed: int = 0) -> ImportedFamily:
    """The analysis plus generated datasets (seeded: same file, same seed, same rows)."""
    data = {}
    for kind in pipelines.KINDS:
        rng = random.Random(f"{seed}/{analysis.family}/{kind}")
        try:
            data[kind] = datagen.generate(analysis.inputs, analysis.hints, rng, kind)
        except datagen.UnsupportedType as exc:
            raise PipelineImportError(f"{origin}: {exc}") from None
    return ImportedFamily(analysis.family, analysis.spec, analysis.inputs, analysis.keys, analysis.ordered,
                          analysis.reference, data, origin)


# -- finding the function ------------------------------------------------------------------
def _parse(path: Path) -> tuple[str, ast.Module]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise PipelineImportError(f"cannot read pipeline file {str(path)!r}: {reason}") from None
    try:
        return text, ast.parse(text, filename=str(path))
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        raise PipelineImportError(f"{path.name} does not parse as Python: "
                                  f"{getattr(exc, 'msg', exc)}" + (f" (line {line})" if line else "")) from None


def _mentions_dataframe(node: ast.AST | None) -> bool:
    return node is not None and any(
        (isinstance(n, ast.Name) and n.id == "DataFrame") or (isinstance(n, ast.Attribute) and n.attr == "DataFrame")
        or (isinstance(n, ast.Constant) and isinstance(n.value, str) and "DataFrame" in n.value)
        for n in ast.walk(node))


def _pick_function(tree: ast.Module, name: str | None, path: Path) -> ast.FunctionDef:
    funcs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    names = ", ".join(f.name for f in funcs) or "none"
    if name is not None:
        found = next((f for f in funcs if f.name == name), None)
        if found is None:
            raise PipelineImportError(f"{path.name} has no top-level function {name!r} (functions: {names})")
        chosen = found
    else:
        typed = [f for f in funcs if _mentions_dataframe(f.returns)
                 or any(_mentions_dataframe(a.annotation) for a in f.args.args)]
        public = [f for f in funcs if not f.name.startswith("_")]
        pool = typed if typed else public
        if not funcs:
            raise PipelineImportError(f"{path.name} defines no top-level function to import")
        if len(pool) != 1:
            listed = ", ".join(f.name for f in (pool or funcs))
            raise PipelineImportError(f"{path.name}: which function? several candidates ({listed}): "
                                      "pass --function NAME")
        chosen = pool[0]
    if isinstance(chosen, ast.AsyncFunctionDef):
        raise PipelineImportError(f"{path.name}:{chosen.name} is async; import a plain DataFrame function")
    return chosen


def _family_name(function: str) -> str:
    """The family id: the function's name, suffixed when a built-in family already has it."""
    name = re.sub(r"\W", "_", function).lower()
    return f"{name}_user" if name in pipelines.family_names() else name


# -- module-level names the function may use -----------------------------------------------
_MODULES = {"pyspark.sql.functions": "F", "pyspark.sql.types": "T"}


def _module_names(tree: ast.Module) -> tuple[dict[str, ast.expr], dict[str, ast.expr]]:
    """Names bound by pyspark imports (-> ``F``/``T``/``Window`` expressions) and module-level
    literal constants (-> their value), the two kinds of outside name a pipeline may lean on."""
    aliases: dict[str, ast.expr] = {}
    constants: dict[str, ast.expr] = {}

    def attr(base: str, name: str) -> ast.expr:
        return ast.Attribute(ast.Name(base, ast.Load()), name, ast.Load())

    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in _MODULES and a.asname:
                    aliases[a.asname] = ast.Name(_MODULES[a.name], ast.Load())
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                bound = a.asname or a.name
                full = f"{node.module}.{a.name}"
                if full in _MODULES:
                    aliases[bound] = ast.Name(_MODULES[full], ast.Load())
                elif node.module in _MODULES:
                    aliases[bound] = attr(_MODULES[node.module], a.name)
                elif a.name == "Window" and node.module in ("pyspark.sql", "pyspark.sql.window"):
                    aliases[bound] = ast.Name("Window", ast.Load())
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if (value := _constant(node.value)) is not None:
                constants[node.targets[0].id] = value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                (value := _constant(node.value)) is not None:
            constants[node.target.id] = value
    return aliases, constants


_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod)


def _constant(node: ast.expr | None) -> ast.expr | None:
    """A literal, or arithmetic over numeric literals folded to one (``SESSION_GAP = 30 * 60``).
    Hand-written: ``ast.literal_eval`` refuses ``30 * 60``, and evaluating the user's module is
    what the importer never does. Powers are left out (``10 ** 10 ** 10`` would not finish)."""
    if _is_literal(node):
        return node
    def fold(n: ast.expr) -> int | float:
        if isinstance(n, ast.Constant) and type(n.value) in (int, float):
            return n.value
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
            return -fold(n.operand) if isinstance(n.op, ast.USub) else fold(n.operand)
        if isinstance(n, ast.BinOp) and isinstance(n.op, _ARITHMETIC):
            left, right = fold(n.left), fold(n.right)
            ops = {ast.Add: lambda: left + right, ast.Sub: lambda: left - right, ast.Mult: lambda: left * right,
                   ast.Div: lambda: left / right, ast.FloorDiv: lambda: left // right, ast.Mod: lambda: left % right}
            value = ops[type(n.op)]()
            if abs(value) > 1e18:
                raise ValueError("too large")
            return value
        raise ValueError("not arithmetic over literals")
    try:
        return ast.copy_location(ast.Constant(fold(node)), node) if node is not None else None
    except (ValueError, ZeroDivisionError, TypeError):
        return None


def _is_literal(node: ast.expr | None) -> bool:
    if node is None:
        return False
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


# -- parameters and schemas ----------------------------------------------------------------
def _parameters(func: ast.FunctionDef, constants: dict[str, ast.expr],
                where: str) -> tuple[list[ast.arg], dict[str, ast.expr]]:
    """The DataFrame parameters, and the literal-default ones (inlined as constants; a default
    naming a module-level literal constant counts as that literal)."""
    args = func.args
    if args.vararg or args.kwarg:
        raise PipelineImportError(f"{where} takes *args/**kwargs; name each input DataFrame as a parameter")
    positional = args.posonlyargs + args.args
    defaults = dict(zip([a.arg for a in positional][len(positional) - len(args.defaults):], args.defaults))
    defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None})
    defaults = {k: constants.get(d.id, d) if isinstance(d, ast.Name) else d for k, d in defaults.items()}
    frames, inlined = [], {}
    for a in positional + args.kwonlyargs:
        if a.arg == "spark":
            continue  # the sandbox has its own ``spark``
        if a.arg in defaults and _is_literal(defaults[a.arg]) and not _mentions_dataframe(a.annotation):
            inlined[a.arg] = defaults[a.arg]
        elif a.annotation is not None and not _mentions_dataframe(a.annotation):
            raise PipelineImportError(f"{where}: parameter {a.arg!r} is not a DataFrame and has no literal "
                                      "default; Mini-World passes only DataFrames")
        else:
            frames.append(a)
    if not frames:
        raise PipelineImportError(f"{where} takes no DataFrame parameter; a task needs input DataFrames")
    return frames, inlined


_KNOWN_TYPE = re.compile(r"^(int|bigint|smallint|tinyint|double|float|string|boolean|date|timestamp|binary|"
                         r"decimal(\(\d+,\d+\))?|(var)?char\(\d+\)|(array|map|struct)<.+>)$")


def ddl_ok(ddl: str) -> bool:
    """A DDL schema whose every column has a Spark type (so prose is not taken for a schema)."""
    cols = parse_ddl(ddl)
    return bool(cols) and all(_KNOWN_TYPE.match(t) and re.fullmatch(r"\w+", c) for c, t in cols.items())


def _schemas(func: ast.FunctionDef, params: list[ast.arg], docstring: str, samples: dict[str, Path],
             where: str) -> tuple[dict[str, str], dict[str, str], dict[str, list[tuple]]]:
    names = [p.arg for p in params]
    unknown = [k for k in samples if k not in names]
    if unknown:
        raise PipelineImportError(f"--sample {unknown[0]}=...: {where} has no DataFrame parameter {unknown[0]!r} "
                                  f"(parameters: {', '.join(names)})")
    doc_schemas, doc_rows = _docstring_schemas(docstring, names)
    inputs, sources, rows = {}, {}, {}
    for p in params:
        if p.arg in samples:
            from miniworld.suites.samples import read_sample  # pyarrow: only when a sample is given

            try:
                inputs[p.arg], rows[p.arg] = read_sample(samples[p.arg])
            except ValueError as exc:
                raise PipelineImportError(f"--sample {p.arg}={samples[p.arg]}: {exc}") from None
            sources[p.arg] = "sample"
        elif (hinted := _annotated_ddl(p.annotation)) is not None:
            if not ddl_ok(hinted):
                raise PipelineImportError(f"{where}: the type hint of {p.arg!r} is not a DDL schema "
                                          f"('col TYPE, ...'): {hinted!r}")
            inputs[p.arg], sources[p.arg] = hinted, "type hint"
        elif p.arg in doc_schemas:
            inputs[p.arg], sources[p.arg] = doc_schemas[p.arg], "docstring"
            if p.arg in doc_rows:
                rows[p.arg] = doc_rows[p.arg]
        else:
            raise PipelineImportError(
                f"{where}: cannot infer the schema of {p.arg!r}: annotate it Annotated[DataFrame, \"col TYPE, ...\"], "
                f"add a docstring line '{p.arg}: col TYPE, ...', or pass --sample {p.arg}=FILE.csv|.json|.parquet")
    return inputs, sources, rows


def _annotated_ddl(annotation: ast.expr | None) -> str | None:
    """``Annotated[DataFrame, "a INT, b STRING"]`` -> the DDL string (also when quoted)."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return None
    if isinstance(annotation, ast.Subscript):
        head = annotation.value
        head_name = head.attr if isinstance(head, ast.Attribute) else getattr(head, "id", None)
        if head_name == "Annotated" and isinstance(annotation.slice, ast.Tuple):
            for meta in annotation.slice.elts[1:]:
                if isinstance(meta, ast.Constant) and isinstance(meta.value, str):
                    return meta.value.strip()
    return None


_DOC_LINE = re.compile(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+?)\s*$")


def _docstring_schemas(doc: str, names: list[str]) -> tuple[dict[str, str], dict[str, list[tuple]]]:
    """Schemas from ``NAME: col TYPE, ...`` lines and from doctest ``createDataFrame`` examples."""
    schemas: dict[str, str] = {}
    rows: dict[str, list[tuple]] = {}
    for line in doc.splitlines():
        m = _DOC_LINE.match(line)
        if m and m.group(1) in names and ddl_ok(m.group(2)):
            schemas.setdefault(m.group(1), m.group(2))
    example = "\n".join(re.sub(r"^\s*(>>>|\.\.\.) ?", "", ln) for ln in doc.splitlines()
                        if re.match(r"^\s*(>>>|\.\.\.)", ln))
    try:
        statements = ast.parse(example).body if example else []
    except SyntaxError:
        statements = []
    for st in statements:
        if not (isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name)
                and st.targets[0].id in names and isinstance(st.value, ast.Call)
                and getattr(st.value.func, "attr", None) == "createDataFrame"):
            continue
        call, name = st.value, st.targets[0].id
        schema = call.args[1] if len(call.args) > 1 else \
            next((k.value for k in call.keywords if k.arg == "schema"), None)
        if isinstance(schema, ast.Constant) and isinstance(schema.value, str) and ddl_ok(schema.value):
            schemas[name] = schema.value.strip()
            if call.args and _is_literal(call.args[0]):
                rows[name] = [tuple(r) for r in ast.literal_eval(call.args[0])]
    return schemas, rows


def _spec(doc: str, function: str, path: Path) -> str:
    """The docstring minus its schema and doctest lines; a plain default when there is none."""
    def schema_line(ln: str) -> bool:
        m = _DOC_LINE.match(ln)
        return bool(m) and ddl_ok(m.group(2))

    keep = [ln for ln in doc.splitlines() if not re.match(r"^\s*(>>>|\.\.\.)", ln) and not schema_line(ln)]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(keep)).strip()
    text = re.sub(r"(?im)^\s*(inputs|schemas|args|arguments|parameters|example|examples)\s*:?\s*$\n?", "", text).strip()
    origin = f"This is `{function}` from {path.name}, a user's own pipeline."
    return f"{text}\n\n{origin}" if text else f"{origin} Return exactly what the original implementation returns."


# -- checks --------------------------------------------------------------------------------
_ACTIONS = {"collect", "count", "show", "toPandas", "first", "take", "head", "toLocalIterator", "foreach",
            "foreachPartition", "display", "toArrow", "toJSON", "describe", "summary"}
_RDD = {"rdd", "sparkContext", "_jsc", "_jvm", "mapPartitions", "parallelize", "foreach", "foreachPartition"}
_IO = {"read", "readStream", "write", "writeStream", "writeTo", "saveAsTable", "insertInto", "save", "load",
       "text", "csv", "json", "parquet", "orc", "table", "sql", "catalog", "checkpoint", "localCheckpoint",
       "open", "os", "sys", "subprocess", "socket", "input", "createOrReplaceTempView", "createTempView",
       "createGlobalTempView", "createOrReplaceGlobalTempView", "cache", "persist", "unpersist", "toPandas"}


def _check_returns(func: ast.FunctionDef, where: str) -> None:
    """The function must return a DataFrame: a value on every ``return``, no action at the end."""
    if func.returns is not None and not _mentions_dataframe(func.returns):
        raise PipelineImportError(f"{where} is annotated to return {ast.unparse(func.returns)}, not a DataFrame")
    returns = [n for n in ast.walk(func) if isinstance(n, ast.Return)]
    if not any(r.value is not None and not (isinstance(r.value, ast.Constant) and r.value.value is None)
               for r in returns):
        raise PipelineImportError(f"{where} returns no DataFrame (no `return <DataFrame>`); "
                                  "return the result instead of writing or showing it")
    for r in returns:
        if isinstance(r.value, ast.Call) and isinstance(r.value.func, ast.Attribute) and r.value.func.attr in _ACTIONS:
            raise PipelineImportError(f"{where} returns .{r.value.func.attr}() (line {r.lineno}), not a DataFrame; "
                                      "return the DataFrame itself")
        if isinstance(r.value, (ast.Constant, ast.List, ast.Dict, ast.Tuple, ast.JoinedStr)):
            raise PipelineImportError(f"{where} returns a plain {type(r.value).__name__.lower()} (line {r.lineno}), "
                                      "not a DataFrame")


def _check_policy(source: str, first_line: int, where: str) -> None:
    """The sandbox's AST policy over the function's source, its verdict said in pipeline terms."""
    violations = gate.check(source)
    if not violations:
        return
    def word(v: gate.Violation) -> str:
        found = re.search(r"'([^']+)'", v.detail)
        return found.group(1) if found else ""

    # the most telling violation first: RDD/SparkContext, then I/O, then anything else
    v = min(violations, key=lambda x: (word(x) not in _RDD, word(x) not in _IO, x.line))
    line = first_line + v.line - 1
    if word(v) in _RDD:
        what = f"uses the RDD API / SparkContext ({word(v)!r}, line {line}); rewrite it with the DataFrame API"
    elif word(v) in _IO:
        what = (f"does I/O inside the function ({word(v)!r}, line {line}); take the data as DataFrame parameters "
                "and return the result instead of reading or writing it")
    else:
        what = f"cannot run in the sandbox: line {line}: {v.detail}"
    raise PipelineImportError(f"{where} {what}")


_SANDBOX_NAMES = {"F", "T", "Window", "DataFrame", "spark"}


def _check_free_names(func: ast.FunctionDef, substituted: set[str], where: str) -> None:
    """Every name the function reads must exist in the sandbox (no module-level helpers) or be
    substituted by the rewrite (pyspark aliases, constants). Checked on the function as parsed
    from the file, so the line named is the file's own."""
    bound = {a.arg for a in ast.walk(func) if isinstance(a, ast.arg)}
    bound |= {n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}
    bound |= {n.name for n in ast.walk(func) if isinstance(n, (ast.FunctionDef, ast.Lambda)) and hasattr(n, "name")}
    bound |= {(a.asname or a.name).split(".")[0] for n in ast.walk(func) if isinstance(n, (ast.Import, ast.ImportFrom))
              for a in n.names}
    allowed = bound | substituted | _SANDBOX_NAMES | (set(dir(builtins)) - gate.BLOCKED_NAMES)
    annotations = {id(n) for a in ast.walk(func) if isinstance(a, ast.arg) and a.annotation is not None
                   for n in ast.walk(a.annotation)}
    annotations |= {id(n) for n in ast.walk(func.returns)} if func.returns is not None else set()
    for n in ast.walk(func):  # annotations are dropped by the rewrite: they may name anything
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in allowed and id(n) not in annotations:
            raise PipelineImportError(f"{where} uses {n.id!r}, defined outside the function (line "
                                      f"{n.lineno}); the sandbox runs the function alone: "
                                      "move it inside the function or make it a literal constant")


# -- rewriting -----------------------------------------------------------------------------
class _Rewriter(ast.NodeTransformer):
    """Replace outside names (pyspark aliases, literal constants and defaults) by sandbox ones."""

    def __init__(self, names: dict[str, ast.expr], shadowed: set[str]) -> None:
        self.names, self.shadowed = names, shadowed

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if isinstance(node.ctx, ast.Load) and node.id in self.names and node.id not in self.shadowed:
            return ast.copy_location(_clone(self.names[node.id]), node)
        return node


def _clone(node: ast.expr) -> ast.expr:
    return ast.parse(ast.unparse(node), mode="eval").body


def _rewrite(func: ast.FunctionDef, aliases: dict[str, ast.expr], constants: dict[str, ast.expr],
             params: list[ast.arg]) -> str:
    """The function as the sandbox runs it: ``def transform(<DataFrames>) -> DataFrame``."""
    func = _clone_def(func)
    body = func.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # the docstring becomes the spec
    if not body:
        body = [ast.Pass()]
    local = {n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    shadowed = local | {p.arg for p in params}
    new = ast.FunctionDef(
        name="transform",
        args=ast.arguments(posonlyargs=[], args=[ast.arg(p.arg, ast.Name("DataFrame", ast.Load())) for p in params],
                           kwonlyargs=[], kw_defaults=[], defaults=[]),
        body=[_Rewriter({**constants, **aliases}, shadowed).visit(st) for st in body],
        decorator_list=[], returns=ast.Name("DataFrame", ast.Load()), type_params=[])
    return ast.unparse(ast.fix_missing_locations(ast.Module([new], [])))


def _clone_def(func: ast.FunctionDef) -> ast.FunctionDef:
    return ast.parse(ast.unparse(func)).body[0]

"""Parsing and validating BPMN/DMN bundles, safely, into SpiffWorkflow specs.

A *bundle* is a mapping ``file name → bytes`` deployed together, so call
activities and DMN tables can resolve. Every failure becomes a
:class:`BpmnValidationError` naming the file, the element id and the line.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser

from .scripting import ScriptRejected, ScriptSyntaxError, check_script

CAMUNDA_NS = b"http://camunda.org/schema/1.0/bpmn"
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"

# Elements whose text is Python evaluated by the engine, and how it is compiled.
_SCRIPT_TAGS = {
    "script": "exec",
    "preScript": "exec",
    "postScript": "exec",
    "conditionExpression": "eval",
    "timeDuration": "eval",
    "timeDate": "eval",
    "timeCycle": "eval",
    "loopCardinality": "eval",
    "completionCondition": "eval",
}
# DMN cells whose ``<text>`` the engine evaluates as Python (an input entry may be a bare test, ``> 10``).
_DMN_EXPRESSION_PARENTS = ("inputExpression", "inputEntry", "outputEntry")


class BpmnValidationError(Exception):
    """A bundle cannot be deployed; carries where the problem is."""

    def __init__(self, message: str, file_name: str | None = None, element_id: str | None = None,
                 line: int | None = None):
        super().__init__(message)
        self.message = message
        self.file_name = file_name
        self.element_id = element_id or None
        self.line = line

    def to_dict(self) -> dict:
        """Return the error as JSON-ready fields (for problem+json)."""
        return {"file": self.file_name, "element_id": self.element_id, "line": self.line, "message": self.message}


@dataclass
class ParsedProcess:
    """One executable process found in a bundle, with the files it depends on."""

    process_id: str
    name: str
    file_name: str
    files: dict[str, str]
    content_hash: str
    form_keys: dict[str, str] = field(default_factory=dict)


@dataclass
class ParsedBundle:
    """Result of parsing a bundle: its dialect and the executable processes in it."""

    dialect: str
    processes: list[ParsedProcess] = field(default_factory=list)


def _xml_parser() -> etree.XMLParser:
    # Hardened: no entity expansion, no DTD loading, no network, bounded tree.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_comments=True)


def read_xml(file_name: str, content: bytes) -> etree._Element:
    """Parse XML bytes with a hardened parser; refuse any DOCTYPE (XXE, entity bombs)."""
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BpmnValidationError("the file must be UTF-8 encoded text", file_name, None,
                                  content[: err.start].count(b"\n") + 1) from None
    if b"<!doctype" in content[:4096].lower() or b"<!entity" in content.lower():
        raise BpmnValidationError("DOCTYPE and ENTITY declarations are not allowed (XXE protection)", file_name,
                                  None, content[: content.lower().find(b"<!")].count(b"\n") + 1)
    try:
        tree = etree.fromstring(content, parser=_xml_parser()).getroottree()
    except etree.XMLSyntaxError as err:
        line = err.lineno if err.lineno else None
        raise BpmnValidationError(f"the file is not well-formed XML: {err.msg}", file_name, None, line) from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise BpmnValidationError("DOCTYPE declarations (and so entities) are not allowed", file_name, None, 1)
    return tree.getroot()


def dialect_of(files: dict[str, bytes]) -> str:
    """Return 'camunda' if any file uses Camunda extensions, else 'spiff' (a superset of plain BPMN)."""
    return "camunda" if any(CAMUNDA_NS in content for content in files.values()) else "spiff"


def new_parser(dialect: str):
    """Create the SpiffWorkflow parser for a dialect, validating against the BPMN XSD."""
    cls = CamundaParser if dialect == "camunda" else SpiffBpmnParser
    return cls(validator=BpmnValidator())


def _element_line(trees: dict[str, etree._Element], file_name: str | None, element_id: str | None):
    """Find (file, line) of the element with this id, searching the named file first."""
    if not element_id:
        return file_name, None
    names = ([file_name] if file_name in trees else []) + [n for n in trees if n != file_name]
    for name in names:
        found = trees[name].xpath("//*[@id=$eid]", eid=element_id)
        if found:
            return name, found[0].sourceline
    return file_name, None


def _guess_element(trees: dict[str, etree._Element], message: str, file_name: str | None):
    """Find the element a message talks about: one whose attribute or text is a name quoted in it."""
    names = ([file_name] if file_name in trees else []) + [n for n in trees if n != file_name]
    searches = [("//*[@*=$t or normalize-space(text())=$t]", t) for t in re.findall(r"'([^'\s]{1,200})'", message)]
    searches += [("//*[@id=$t or @name=$t]", t) for t in re.findall(r"[\w.-]{3,200}", message)]
    # A missing attribute, e.g. KeyError('{ns}decisionRef'): the first element that should carry it.
    for attr in re.findall(r"\{[^}]+\}(\w+)", message):
        searches.append((f"//*[@id][not(@*[local-name()='{attr}'])][contains(local-name(), 'Task')]", ""))
    for xpath, token in searches:
        for name in names:
            for element in trees[name].xpath(xpath, t=token):
                owner = element
                while owner is not None and owner.get("id") is None:
                    owner = owner.getparent()
                if owner is not None:
                    return name, owner.get("id"), element.sourceline
    return None


def _first_process(trees: dict[str, etree._Element], file_name: str | None):
    """Fallback location: the file's first process element."""
    tree = trees.get(file_name) if file_name else next(iter(trees.values()), None)
    found = tree.xpath("//*[local-name()='process']") if tree is not None else []
    return (found[0].get("id"), found[0].sourceline) if found else (None, None)


def _located(err: Exception, trees: dict[str, etree._Element], default_file: str | None) -> BpmnValidationError:
    """Turn any parser exception into a located BpmnValidationError."""
    if isinstance(err, BpmnValidationError):
        return err
    element_id = getattr(err, "id", None) or getattr(err, "bpmn_id", None)
    file_name = getattr(err, "file_name", None) or default_file
    line = getattr(err, "line_number", None) or getattr(err, "sourceline", None)
    message = str(err.args[0]) if err.args else err.__class__.__name__
    found_file, found_line = _element_line(trees, file_name, element_id)
    if not element_id and not line:
        guess = _guess_element(trees, message, file_name)
        if guess is not None:
            found_file, element_id, found_line = guess
        else:
            element_id, found_line = _first_process(trees, found_file or file_name)
    if isinstance(line, str):
        line = int(line) if line.isdigit() else None
    return BpmnValidationError(message, found_file or file_name, element_id, line or found_line)


def _owner_id(element: etree._Element) -> str | None:
    """The id of the nearest element (this one or an ancestor) that has one."""
    while element is not None and element.get("id") is None:
        element = element.getparent()
    return element.get("id") if element is not None else None


def _refuse_script(file_name: str, element: etree._Element, err: ScriptRejected) -> BpmnValidationError:
    """A located deploy error for a script the sandbox refuses (its line counted inside the file)."""
    local = etree.QName(element).localname
    return BpmnValidationError(f"{local} is not allowed: {err}", file_name, _owner_id(element),
                               element.sourceline + (err.line or 1) - 1)


def check_scripts(file_name: str, root: etree._Element) -> None:
    """Reject scripts, conditions and timer expressions that break the sandbox rules."""
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        mode = _SCRIPT_TAGS.get(etree.QName(element).localname)
        if mode is None or not (element.text or "").strip():
            continue
        try:
            check_script(element.text if mode == "exec" else element.text.strip(), mode)
        except ScriptRejected as err:
            raise _refuse_script(file_name, element, err) from None


def check_dmn_expressions(file_name: str, root: etree._Element) -> None:
    """Reject DMN cells that break the sandbox rules. A cell that is not Python as written is tried as
    the engine tries it (``v > 10``); one that is not Python either way is left for the engine to report."""
    for element in root.iter():
        if not isinstance(element.tag, str) or etree.QName(element).localname != "text":
            continue
        parent = element.getparent()
        text = (element.text or "").strip().replace("?", "v")  # ``4 < ? < 6``: ``?`` is the input value
        if not text or parent is None or etree.QName(parent).localname not in _DMN_EXPRESSION_PARENTS:
            continue
        for candidate in (text, f"v {text}"):
            try:
                check_script(candidate, "eval")
                break
            except ScriptSyntaxError:
                continue
            except ScriptRejected as err:
                raise _refuse_script(file_name, parent, err) from None


def _is_dmn(root: etree._Element) -> bool:
    return "dmn" in (etree.QName(root).namespace or "").lower()


def parse_bundle(files: dict[str, bytes], max_file_bytes: int = 2_000_000):
    """Parse and validate a bundle; return ``(ParsedBundle, spiff parser)`` or raise BpmnValidationError."""
    if not files:
        raise BpmnValidationError("no BPMN or DMN files were given")
    trees: dict[str, etree._Element] = {}
    for name, content in files.items():
        if len(content) > max_file_bytes:
            raise BpmnValidationError(f"the file is larger than the limit of {max_file_bytes} bytes", name)
        trees[name] = read_xml(name, content)
    dialect = dialect_of(files)
    parser = new_parser(dialect)
    current = None
    try:
        for name, root in trees.items():
            current = name
            if _is_dmn(root):
                check_dmn_expressions(name, root)
                parser.add_dmn_xml(root, filename=name)
            else:
                check_scripts(name, root)
                parser.add_bpmn_xml(root, filename=name)
        current = None
        bundle = ParsedBundle(dialect=dialect)
        text = {name: content.decode("utf-8") for name, content in files.items()}
        dmn_files = sorted(n for n, r in trees.items() if _is_dmn(r))
        for process_id in parser.get_process_ids():
            process_parser = parser.get_process_parser(process_id)
            current = process_parser.filename
            spec = parser.get_spec(process_id)
            needed = {process_parser.filename}
            for sub_id in parser.get_subprocess_specs(process_id):
                sub_parser = parser.get_process_parser(sub_id)
                if sub_parser is not None:
                    needed.add(sub_parser.filename)
            if any(trees[n].xpath("//*[local-name()='businessRuleTask']") for n in needed):
                needed.update(dmn_files)
            dep_files = {n: text[n] for n in sorted(needed)}
            digest = hashlib.sha256()
            for n, body in dep_files.items():
                digest.update(n.encode() + b"\0" + body.encode() + b"\0")
            bundle.processes.append(ParsedProcess(
                process_id=process_id,
                name=process_parser.get_name() or process_id,
                file_name=process_parser.filename,
                files=dep_files,
                content_hash=digest.hexdigest(),
                form_keys={ts.bpmn_id: form_key_of(ts) for ts in spec.task_specs.values()
                           if getattr(ts, "manual", False) and form_key_of(ts)},
            ))
    except (ValidationException, BpmnValidationError) as err:
        raise _located(err, trees, current) from None
    except Exception as err:  # noqa: BLE001 - Spiff raises many types for odd models
        raise _located(err, trees, current) from None
    if not bundle.processes:
        first = next(iter(files))
        element_id, line = _first_process(trees, first)
        raise BpmnValidationError("no executable process: set isExecutable=\"true\" on the process to run it",
                                  first, element_id, line)
    return bundle, parser


def form_key_of(task_spec) -> str | None:
    """The JSON form a user task asks for: spiff property formKey/formJsonSchemaFilename or camunda formKey."""
    props = (getattr(task_spec, "extensions", None) or {}).get("properties", {}) or {}
    key = props.get("formKey") or props.get("formJsonSchemaFilename")
    form = getattr(task_spec, "form", None)
    if not key and form is not None:
        key = getattr(form, "key", None)
    return key.removesuffix(".json").removesuffix(".schema") if key else None


def specs_for(files: dict[str, str], dialect: str, process_id: str):
    """Parse a stored version's files and return ``(spec, subprocess_specs)`` for one process."""
    parser = new_parser(dialect)
    for name, body in files.items():
        root = read_xml(name, body.encode("utf-8"))
        if _is_dmn(root):
            parser.add_dmn_xml(root, filename=name)
        else:
            parser.add_bpmn_xml(root, filename=name)
    return parser.get_spec(process_id), parser.get_subprocess_specs(process_id)

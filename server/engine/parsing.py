"""Parsing and validating BPMN/DMN bundles, safely, into SpiffWorkflow specs.

A *bundle* is a mapping ``file name → bytes`` deployed together, so call
activities and DMN tables can resolve. Every failure becomes a
:class:`BpmnValidationError` naming the file, the element id and the line.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import threading
from dataclasses import dataclass, field

from lxml import etree
from SpiffWorkflow.bpmn.exceptions import WorkflowDataException
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.data_spec import BpmnDataStoreSpecification
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser

from .messages import parse_error_sentence
from .scripting import ScriptRejected, ScriptSyntaxError, check_script, registered_services
from .tolerance import ToleranceError, normalise_ids, prepare_bpmn

CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
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
    "condition": "eval",
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
    """One executable process found in a bundle, with the files it depends on and what deploying it
    had to assume (warnings: file, element_id, line, message)."""

    process_id: str
    name: str
    file_name: str
    files: dict[str, str]
    content_hash: str
    form_keys: dict[str, str] = field(default_factory=dict)
    warnings: list[dict] = field(default_factory=list)


@dataclass
class ParsedBundle:
    """Result of parsing a bundle: its dialect, the executable processes in it and every warning."""

    dialect: str
    processes: list[ParsedProcess] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)


class UnavailableDataStore(BpmnDataStoreSpecification):
    """A data store the model names but Flowdesk has no implementation for: reading or writing it is an
    incident on the task that does so (deploying the model is not refused)."""

    def _refuse(self, my_task, **direction):
        raise WorkflowDataException(f"the data store '{self.bpmn_name}' has no implementation in Flowdesk, so "
                                    "this task cannot read or write it", my_task, **direction)

    def get(self, my_task, **kwargs):
        """Refuse to read (an incident on the reading task)."""
        self._refuse(my_task, data_input=self)

    def set(self, my_task, **kwargs):
        """Refuse to write (an incident on the writing task)."""
        self._refuse(my_task, data_output=self)


class _AnyDataStore(dict):
    """``DATA_STORE_CLASSES`` that knows every name: each is an :class:`UnavailableDataStore`."""

    def __contains__(self, name):
        return True

    def __getitem__(self, name):
        return UnavailableDataStore


def _xml_parser() -> etree.XMLParser:
    # Hardened: no entity expansion, no DTD loading, no network, bounded tree.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_comments=True)


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_DECLARATION = re.compile(r"""^(\s*<\?xml[^>]*?encoding\s*=\s*)(["'])([A-Za-z0-9._\-]+)\2""")


def _encoding_of(content: bytes) -> tuple[str, int]:
    """The encoding of XML bytes (BOM, then the UTF-16/32 shape of '<?', then the declaration) and the
    BOM's length."""
    for bom, name in _BOMS:
        if content.startswith(bom):
            return name, len(bom)
    for shape, name in ((b"<\x00?\x00", "utf-16-le"), (b"\x00<\x00?", "utf-16-be")):
        if content.startswith(shape):
            return name, 0
    head = content[:200].decode("ascii", "replace")
    declared = _DECLARATION.match(head)
    if declared is None:
        return "utf-8", 0
    name = declared.group(3).lower()
    if name.replace("-", "").startswith(("utf16", "utf32", "ucs2", "ucs4")):
        return "utf-8", 0  # declared wide but written in single bytes (re-saved as text): read what is there
    return name, 0


def xml_text(file_name: str, content: bytes) -> str:
    """XML bytes in any encoding their BOM or declaration names, as text declaring UTF-8 (how versions
    are stored); a file that is not in the encoding it names is refused with the line of the first bad byte."""
    encoding, skip = _encoding_of(content)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise BpmnValidationError(f"the file declares the encoding '{encoding}', which is unknown", file_name,
                                  None, 1) from None
    try:
        text = content[skip:].decode(encoding)
    except UnicodeDecodeError as err:
        good = content[skip: skip + err.start].decode(encoding, "replace")
        raise BpmnValidationError(f"the file is not valid {encoding} text (it says it is, or no encoding is "
                                  "declared and UTF-8 is assumed)", file_name, None, good.count("\n") + 1) from None
    return _DECLARATION.sub(lambda m: f"{m.group(1)}{m.group(2)}UTF-8{m.group(2)}", text, count=1)


def read_xml(file_name: str, content: bytes | str) -> etree._Element:
    """Parse XML (bytes in any declared encoding, or text) with a hardened parser; refuse any DOCTYPE
    (XXE, entity bombs)."""
    text = content if isinstance(content, str) else xml_text(file_name, content)
    lowered = text.lower()
    if "<!doctype" in lowered[:4096] or "<!entity" in lowered:
        raise BpmnValidationError("DOCTYPE and ENTITY declarations are not allowed (XXE protection)", file_name,
                                  None, text[: lowered.find("<!")].count("\n") + 1)
    try:
        tree = etree.fromstring(text.encode("utf-8"), parser=_xml_parser()).getroottree()
    except etree.XMLSyntaxError as err:
        line = err.lineno if err.lineno else None
        raise BpmnValidationError(f"the file is not well-formed XML: {err.msg}", file_name, None, line) from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise BpmnValidationError("DOCTYPE declarations (and so entities) are not allowed", file_name, None, 1)
    return tree.getroot()


def dialect_of(files: dict[str, str]) -> str:
    """Return 'camunda' if any file uses Camunda 7 extensions, else 'spiff' (a superset of plain BPMN)."""
    return "camunda" if any(CAMUNDA_NS in text for text in files.values()) else "spiff"


def new_parser(dialect: str):
    """Create the SpiffWorkflow parser for a dialect, validating against the BPMN XSD; every data store
    it meets is an :class:`UnavailableDataStore`."""
    cls = CamundaParser if dialect == "camunda" else SpiffBpmnParser
    parser = cls(validator=_validator())
    parser.DATA_STORE_CLASSES = _AnyDataStore()
    return parser


_VALIDATORS = threading.local()


def _validator() -> BpmnValidator:
    # Loading the XSD takes tens of milliseconds; one per thread (a schema keeps its error log, so threads
    # do not share one).
    validator = getattr(_VALIDATORS, "validator", None)
    if validator is None:
        validator = _VALIDATORS.validator = BpmnValidator()
    return validator


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


_DANGLING = re.compile(r"When looking for a task spec.*\((.+)\)\s*$", re.DOTALL)


def _flow_to(tree, target: str):
    """The sequence flow that leads to ``target`` (an id no element has)."""
    found = tree.xpath("//*[local-name()='sequenceFlow'][@targetRef=$t]", t=target) if tree is not None else []
    return found[0] if found else None


def _element_at(trees: dict[str, etree._Element], file_name: str | None, line: int | None):
    """The id of the element (or its nearest ancestor with an id) that starts on a line of a file."""
    tree = trees.get(file_name) if file_name else None
    if tree is None or not line:
        return None
    for element in tree.iter():
        if isinstance(element.tag, str) and element.sourceline == line:
            return _owner_id(element)
    return None


def _located(err: Exception, trees: dict[str, etree._Element], default_file: str | None,
             id_maps: dict[str, dict[str, str]] | None = None) -> BpmnValidationError:
    """Turn any parser exception into a located BpmnValidationError in a designer's words, naming the
    element by the id the designer gave it."""
    if isinstance(err, BpmnValidationError):
        return err
    element_id = getattr(err, "id", None) or getattr(err, "bpmn_id", None)
    file_name = getattr(err, "file_name", None) or default_file
    line = getattr(err, "line_number", None) or getattr(err, "sourceline", None)
    if isinstance(line, str):
        line = int(line) if line.isdigit() else None
    raw = str(err.args[0]) if err.args else err.__class__.__name__
    from_schema = isinstance(err, ValidationException) and bool(line) and not element_id
    message = parse_error_sentence(raw, from_schema)
    dangling = _DANGLING.search(raw)
    if dangling:  # Spiff names the missing target, and the element the flow leaves: name the flow
        flow = _flow_to(trees.get(file_name), dangling.group(1))
        if flow is not None:
            element_id, line = flow.get("id"), flow.sourceline
    found_file, found_line = _element_line(trees, file_name, element_id)
    if not element_id and line:
        element_id = _element_at(trees, file_name, line) or _first_process(trees, file_name)[0]
    if not element_id and not line:
        guess = _guess_element(trees, raw, file_name)
        if guess is not None:
            found_file, element_id, found_line = guess
        else:
            element_id, found_line = _first_process(trees, found_file or file_name)
    ids = (id_maps or {}).get(found_file or file_name) or {}
    return BpmnValidationError(message, found_file or file_name, ids.get(element_id, element_id), line or found_line)


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


def _relabel(specs, id_map: dict[str, str]) -> None:
    """Give task specs back the ids the designer wrote (their names stay normalised: saved state uses them)."""
    if not id_map:
        return
    for spec in specs:
        for task_spec in spec.task_specs.values():
            task_spec.bpmn_id = id_map.get(task_spec.bpmn_id, task_spec.bpmn_id)


def _add_files(parser, texts: dict[str, str], dialect: str, make_executable: bool):
    """Read, prepare (see :mod:`.tolerance`), check and add each file to the parser; returns the trees and
    what preparing each BPMN file found. Raises BpmnValidationError, or the parser's own errors."""
    trees: dict[str, etree._Element] = {}
    prepared = {}
    services = set(registered_services())
    for name, text in texts.items():
        root = trees[name] = read_xml(name, text)
        if _is_dmn(root):
            check_dmn_expressions(name, root)
            parser.add_dmn_xml(root, filename=name)
            continue
        try:
            found = prepared[name] = prepare_bpmn(name, root, make_executable=make_executable, services=services,
                                                  dialect=dialect)
        except ToleranceError as err:
            raise BpmnValidationError(err.message, name, err.element_id, err.line) from None
        try:
            check_scripts(name, root)
        except BpmnValidationError as err:
            err.element_id = found.id_map.get(err.element_id, err.element_id)
            raise
        try:
            parser.add_bpmn_xml(root, filename=name)
        except Exception as err:  # noqa: BLE001 - the schema and the parser raise many types
            raise _located(err, trees, name, {name: found.id_map}) from None
    return trees, prepared


def parse_bundle(files: dict[str, bytes], max_file_bytes: int = 2_000_000, *, make_executable: bool = False):
    """Parse and validate a bundle; return ``(ParsedBundle, spiff parser)`` or raise BpmnValidationError.
    ``make_executable`` deploys processes marked ``isExecutable="false"`` too (with a warning each)."""
    if not files:
        raise BpmnValidationError("no BPMN or DMN files were given")
    texts: dict[str, str] = {}
    for name, content in files.items():
        if len(content) > max_file_bytes:
            raise BpmnValidationError(f"the file is larger than the limit of {max_file_bytes} bytes", name)
        texts[name] = xml_text(name, content)
    dialect = dialect_of(texts)
    parser = new_parser(dialect)
    trees: dict[str, etree._Element] = {}
    prepared: dict = {}
    current = None
    try:
        trees, prepared = _add_files(parser, texts, dialect, make_executable)
        bundle = ParsedBundle(dialect=dialect, warnings=[w for p in prepared.values() for w in p.warnings])
        for name, found in prepared.items():
            for process_id in found.skipped_processes:
                bundle.warnings.append({"file": name, "element_id": found.id_map.get(process_id, process_id),
                                        "line": None, "message": f"process '{process_id}' is marked not "
                                        "executable (isExecutable=\"false\") and was not deployed: choose "
                                        "'make executable' to deploy it"})
        dmn_files = sorted(n for n, r in trees.items() if _is_dmn(r))
        for process_id in parser.get_process_ids():
            process_parser = parser.get_process_parser(process_id)
            current = process_parser.filename
            spec = parser.get_spec(process_id)
            subprocess_specs = parser.get_subprocess_specs(process_id)
            needed = {process_parser.filename}
            for sub_id in subprocess_specs:
                sub_parser = parser.get_process_parser(sub_id)
                if sub_parser is not None:
                    needed.add(sub_parser.filename)
            if any(trees[n].xpath("//*[local-name()='businessRuleTask']") for n in needed):
                needed.update(dmn_files)
            _relabel([spec, *filter(None, subprocess_specs.values())], _id_map(prepared, needed))
            dep_files = {n: texts[n] for n in sorted(needed)}
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
                warnings=[w for w in bundle.warnings if w["file"] in needed],
            ))
    except BpmnValidationError:
        raise
    except Exception as err:  # noqa: BLE001 - Spiff raises many types for odd models
        raise _located(err, trees, current, {n: p.id_map for n, p in prepared.items()}) from None
    if not bundle.processes:
        first = next(iter(files))
        element_id, line = _first_process(trees, first)
        hint = ("every process is marked not executable (isExecutable=\"false\"): choose 'make executable' "
                "to deploy them" if any(p.skipped_processes for p in prepared.values())
                else "the files define no process with a start event")
        raise BpmnValidationError(f"no executable process: {hint}", first, element_id, line)
    return bundle, parser


def _id_map(prepared: dict, names) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name in names:
        if name in prepared:
            merged.update(prepared[name].id_map)
    return merged


def drawable_xml(text: str) -> tuple[str, dict[str, str]]:
    """A BPMN text as a diagram library can draw it — ids that are not ``xs:ID`` normalised as the engine
    normalises them — and the map original id → drawn id (empty when nothing changed)."""
    try:
        root = read_xml("diagram.bpmn", text)
    except BpmnValidationError:
        return text, {}
    renamed = normalise_ids(root)
    if not renamed:
        return text, {}
    return etree.tostring(root, encoding="unicode"), {original: new for new, original in renamed.items()}


def form_key_of(task_spec) -> str | None:
    """The JSON form a user task asks for: spiff property formKey/formJsonSchemaFilename or camunda formKey."""
    props = (getattr(task_spec, "extensions", None) or {}).get("properties", {}) or {}
    key = props.get("formKey") or props.get("formJsonSchemaFilename")
    form = getattr(task_spec, "form", None)
    if not key and form is not None:
        key = getattr(form, "key", None)
    return key.removesuffix(".json").removesuffix(".schema") if key else None


def specs_for(files: dict[str, str], dialect: str, process_id: str):
    """Parse a stored version's files and return ``(spec, subprocess_specs)`` for one process (prepared as at
    deploy; the deploy already decided which processes run, so every process is taken as executable)."""
    parser = new_parser(dialect)
    _, prepared = _add_files(parser, files, dialect, make_executable=True)
    spec, subprocess_specs = parser.get_spec(process_id), parser.get_subprocess_specs(process_id)
    _relabel([spec, *filter(None, subprocess_specs.values())], _id_map(prepared, files))
    return spec, subprocess_specs

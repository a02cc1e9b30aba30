"""What modelling tools export, made into what SpiffWorkflow runs: one pass over a parsed BPMN tree,
in place, before the Spiff parser sees it — at deploy and again each time a version's specs are
built, so the stored file stays as the designer uploaded it and runs cost nothing extra.

- ids that are not ``xs:ID`` (spaces, leading digits) get a normalised id everywhere they are named;
  the map back to the original is returned, so errors, tasks and the diagram use the designer's ids;
- processes marked ``isExecutable="false"`` become executable when the designer asked for it;
- Zeebe's ``calledElement`` / ``script`` / ``taskDefinition`` extensions become their BPMN meaning;
- an activity with several outgoing flows gets the gateway BPMN implies (parallel, or inclusive
  when some flows carry conditions); a gateway's flows without a condition are taken as Camunda
  takes them (an exclusive gateway's first such flow wins);
- conditions in JUEL, FEEL or Java spelling, and timer values (bare ISO 8601, Bonita milliseconds,
  expressions), become Python — what cannot be translated is refused with its element and line;
- elements Flowdesk cannot run (a call activity naming no process, a service task whose
  implementation is not a registered service, a script in another language) deploy with a warning and
  stop an instance with an incident only when it reaches them.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from lxml import etree

from .expressions import UntranslatableExpression, to_python
from .isodates import TIMER_KINDS, check_timer_value, looks_like_iso, milliseconds_to_duration
from .scripting import SAFE_BUILTINS, SCRIPT_GLOBALS, TRANSLATED_EXPRESSIONS

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
ZEEBE = "http://camunda.org/schema/zeebe/1.0"
SPIFF = "http://spiffworkflow.org/bpmn/schema/1.0/core"
NS = {"bpmn": BPMN, "zeebe": ZEEBE, "spiffworkflow": SPIFF}
# Namespaces whose attributes name a Java (or other engine's) implementation of a task.
_ENGINE_NAMESPACES = ("http://camunda.org/schema/1.0/bpmn", "http://activiti.org/bpmn", "http://flowable.org/bpmn")
_JAVA_IMPLEMENTATION_ATTRS = ("class", "delegateExpression", "expression", "type", "topic")
UNSUPPORTED_FUNCTION = "flowdesk_unsupported"
HELPER_NAMES = frozenset(SCRIPT_GLOBALS) | frozenset(SAFE_BUILTINS)

_NCNAME = re.compile(r"^[A-Za-z_][\w.\-]*$")
# Attributes (by local name) that hold one element id.
_REF_ATTRS = frozenset({"id", "sourceRef", "targetRef", "attachedToRef", "default", "processRef", "calledElement",
                        "bpmnElement", "sourceElement", "targetElement", "dataStoreRef", "dataObjectRef",
                        "messageRef", "errorRef", "signalRef", "escalationRef", "operationRef", "itemSubjectRef",
                        "structureRef", "inMessageRef", "outMessageRef", "activityRef", "categoryValueRef"})
# Elements whose text is one element id.
_REF_ELEMENTS = frozenset({"incoming", "outgoing", "flowNodeRef", "sourceRef", "targetRef", "dataInputRefs",
                           "dataOutputRefs", "eventDefinitionRef", "messageFlowRef", "participantRef",
                           "resourceRef", "supportedInterfaceRef", "interfaceRef", "inMessageRef", "outMessageRef"})
_SPLIT_EXEMPT = frozenset({"exclusiveGateway", "inclusiveGateway", "parallelGateway", "eventBasedGateway",
                           "complexGateway", "startEvent"})
_ACTIVITY_OR_EVENT = frozenset({"task", "userTask", "manualTask", "scriptTask", "serviceTask", "sendTask",
                                "receiveTask", "businessRuleTask", "callActivity", "subProcess", "transaction",
                                "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent"})
_EXPRESSION_TAGS = frozenset({"conditionExpression", "condition", "loopCardinality", "completionCondition"})
_PYTHON_SCRIPT_FORMATS = frozenset({"", "python", "py", "python3", "text/x-python", "application/x-python"})
_FOREIGN_FORM = re.compile(r"[:/]|\.(html?|form|json)$")
_CRON_FIELD = re.compile(r"^[\d*?/,\-LW#A-Za-z]+$")

_ELEMENT_WORDS = {"callActivity": "call activity", "serviceTask": "service task", "scriptTask": "script task",
                  "sendTask": "send task", "businessRuleTask": "business rule task", "userTask": "user task",
                  "intermediateCatchEvent": "intermediate event", "boundaryEvent": "boundary event",
                  "startEvent": "start event", "exclusiveGateway": "exclusive gateway",
                  "inclusiveGateway": "inclusive gateway"}


class ToleranceError(ValueError):
    """Something a tool exported that cannot be made runnable; names the element and its line."""

    def __init__(self, message: str, element: etree._Element | None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.element_id = _owner_id(element) if element is not None else None
        self.line = line or (element.sourceline if element is not None else None)


@dataclass
class Prepared:
    """What a pass over one file found: the id map (normalised → original) and the warnings."""

    id_map: dict[str, str] = field(default_factory=dict)
    warnings: list[dict] = field(default_factory=list)
    skipped_processes: list[str] = field(default_factory=list)

    def warn(self, file_name: str, element: etree._Element | None, message: str) -> None:
        """Record a warning located on an element (its original id)."""
        element_id = _owner_id(element) if element is not None else None
        self.warnings.append({"file": file_name, "element_id": self.id_map.get(element_id, element_id),
                              "line": element.sourceline if element is not None else None, "message": message})


def _local(element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


# Parts of an element that may carry ids of their own but are named by the element they belong to.
_PARTS = frozenset({"conditionExpression", "condition", "timeDuration", "timeDate", "timeCycle", "loopCardinality",
                    "completionCondition", "timerEventDefinition", "conditionalEventDefinition",
                    "multiInstanceLoopCharacteristics", "script"})


def _owner_id(element) -> str | None:
    while element is not None and (element.get("id") is None or _local(element) in _PARTS):
        element = element.getparent()
    return element.get("id") if element is not None else None


def _in_process(element, process_ids: set[str]) -> bool:
    while element is not None and _local(element) != "process":
        element = element.getparent()
    return element is not None and element.get("id") in process_ids


def _label(element) -> str:
    """How a warning names an element: its kind and id (and name when it has one)."""
    kind = _ELEMENT_WORDS.get(_local(element), _local(element))
    name = element.get("name")
    return f"{kind} '{element.get('id')}'" + (f" (\"{name}\")" if name and name != element.get("id") else "")


def _bpmn(local: str) -> str:
    return f"{{{BPMN}}}{local}"


# -- ids -------------------------------------------------------------------------
def normalise_ids(root: etree._Element) -> dict[str, str]:
    """Give every id that is not an ``xs:ID`` a valid, unique one and rewrite every reference to it.
    Returns normalised → original."""
    ids = {e.get("id") for e in root.iter() if isinstance(e.tag, str) and e.get("id") is not None}
    bad = sorted(i for i in ids if not _NCNAME.match(i))
    if not bad:
        return {}
    taken, renamed = set(ids), {}
    for original in bad:
        base = re.sub(r"[^\w.\-]", "_", original.strip()) or "id"
        if not re.match(r"[A-Za-z_]", base):
            base = f"_{base}"
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate)
        renamed[original] = candidate
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        for attr, value in element.attrib.items():
            if etree.QName(attr).localname in _REF_ATTRS and value in renamed:
                element.set(attr, renamed[value])
        if _local(element) in _REF_ELEMENTS and element.text and element.text.strip() in renamed:
            element.text = renamed[element.text.strip()]
    return {new: old for old, new in renamed.items()}


# -- processes -------------------------------------------------------------------
def _mark_executable(file_name: str, root, make_executable: bool, prepared: Prepared) -> None:
    for process in root.iter(_bpmn("process")):
        if process.get("isExecutable", "true") == "true":
            continue
        if not make_executable:
            prepared.skipped_processes.append(process.get("id"))
            continue
        if process.find(_bpmn("startEvent")) is None:
            prepared.warn(file_name, process, f"process '{process.get('id')}' has no start event, so it is not "
                                              "deployed (a pool drawn for another party?)")
            continue
        process.set("isExecutable", "true")
        prepared.warn(file_name, process, f"process '{process.get('id')}' is marked not executable "
                                          "(isExecutable=\"false\"); it is deployed because you chose "
                                          "'make executable'")


# -- Zeebe (Camunda 8) extensions ------------------------------------------------
def _zeebe(element, local: str):
    ext = element.find(_bpmn("extensionElements"))
    return ext.find(f"{{{ZEEBE}}}{local}") if ext is not None else None


def _apply_zeebe(root) -> None:
    for call in root.iter(_bpmn("callActivity")):
        called = _zeebe(call, "calledElement")
        if called is not None and not call.get("calledElement") and called.get("processId"):
            call.set("calledElement", called.get("processId").lstrip("="))
    for task in root.iter(_bpmn("scriptTask")):
        script = _zeebe(task, "script")
        if script is not None and task.find(_bpmn("script")) is None and script.get("expression"):
            result = script.get("resultVariable") or "result"
            body = etree.SubElement(task, _bpmn("script"))
            body.text = f"{result} = {_translated(task, script.get('expression'), 'script')}"


# -- flows -----------------------------------------------------------------------
def _flows_by_source(container) -> dict[str, list]:
    flows: dict[str, list] = {}
    for flow in container.findall(_bpmn("sequenceFlow")):
        flows.setdefault(flow.get("sourceRef"), []).append(flow)
    return flows


def _containers(root):
    for tag in ("process", "subProcess", "transaction", "adHocSubProcess"):
        yield from root.iter(_bpmn(tag))


def _has_condition(flow) -> bool:
    condition = flow.find(_bpmn("conditionExpression"))
    return condition is not None and bool((condition.text or "").strip())


def _always(flow) -> None:
    condition = flow.find(_bpmn("conditionExpression"))
    if condition is None:
        condition = etree.SubElement(flow, _bpmn("conditionExpression"))
    condition.text = "True"


def _split_implicitly(container, id_map: dict[str, str]) -> None:
    """An activity or event with several outgoing flows: BPMN's implicit split, made an explicit gateway
    (which errors and the diagram show as the activity itself)."""
    ids = {e.get("id") for e in container.iter() if isinstance(e.tag, str)}
    nodes = {n.get("id"): n for n in container if isinstance(n.tag, str)}
    for source, flows in _flows_by_source(container).items():
        node = nodes.get(source)
        if node is None or len(flows) < 2 or _local(node) in _SPLIT_EXEMPT or _local(node) not in _ACTIVITY_OR_EVENT:
            continue
        conditional = any(_has_condition(f) for f in flows)
        gateway_id, link_id = _unique(f"{source}__split", ids), _unique(f"{source}__to_split", ids)
        id_map[gateway_id] = id_map.get(source, source)
        gateway = etree.Element(_bpmn("inclusiveGateway" if conditional else "parallelGateway"), id=gateway_id)
        if node.get("default"):
            gateway.set("default", node.attrib.pop("default"))
        node.addnext(gateway)
        link = etree.SubElement(container, _bpmn("sequenceFlow"), id=link_id, sourceRef=source, targetRef=gateway_id)
        link.tail = "\n"
        for flow in flows:
            flow.set("sourceRef", gateway_id)
            if conditional and not _has_condition(flow) and flow.get("id") != gateway.get("default"):
                _always(flow)


def _unique(candidate: str, ids: set) -> str:
    base, n = candidate, 1
    while candidate in ids:
        n += 1
        candidate = f"{base}_{n}"
    ids.add(candidate)
    return candidate


def _unconditioned_gateway_flows(file_name: str, container, prepared: Prepared) -> None:
    """Flows out of an exclusive or inclusive gateway with no condition and not the default: taken when
    reached in order (as Camunda does), i.e. condition ``True``; a warning says so."""
    flows = _flows_by_source(container)
    for gateway in container:
        if _local(gateway) not in ("exclusiveGateway", "inclusiveGateway"):
            continue
        outgoing = flows.get(gateway.get("id"), [])
        if len(outgoing) < 2:
            continue
        bare = [f for f in outgoing if not _has_condition(f) and f.get("id") != gateway.get("default")]
        for flow in bare:
            _always(flow)
        if bare:
            names = ", ".join(f"'{f.get('name') or f.get('id')}'" for f in bare)
            rule = ("the first of them in the file is always taken when no flow before it matches"
                    if _local(gateway) == "exclusiveGateway" else "they are always taken")
            prepared.warn(file_name, gateway, f"{_label(gateway)}: outgoing flow(s) {names} have no condition; "
                                              f"{rule} — add conditions to choose")


# -- expressions -------------------------------------------------------------------
def _translated(element, text: str, what: str) -> str:
    try:
        python, _ = to_python(text, HELPER_NAMES)
        if python != text.strip():
            TRANSLATED_EXPRESSIONS.setdefault(python, text.strip())
    except UntranslatableExpression as err:
        language = element.get("language") or ""
        hint = f" (it is marked as {language.rsplit('/', 1)[-1] or language})" if language else ""
        raise ToleranceError(f"the {what} '{text.strip()}' cannot be translated{hint}: {err}", element,
                             element.sourceline) from None
    return python


def _translate_expressions(root, skipped: set[str]) -> None:
    for element in root.iter():
        if _local(element) not in _EXPRESSION_TAGS or not (element.text or "").strip():
            continue
        if _in_process(element, skipped):
            continue
        what = "condition" if _local(element) in ("conditionExpression", "condition") else "expression"
        element.text = _translated(element, element.text, what)


def _timer_python(element, kind: str, prepared: Prepared, file_name: str) -> str:
    """The Python a timer value becomes: a quoted literal for ISO 8601 (checked now), else the expression."""
    text = (element.text or "").strip()
    if re.fullmatch(r"\d+[lL]?", text):  # Bonita writes durations as milliseconds, Java longs
        duration = milliseconds_to_duration(int(text.rstrip("lL")))
        text = f"R1/{duration}" if kind == "timeCycle" else duration
        prepared.warn(file_name, element, f"the timer value {element.text.strip()} is read as milliseconds: {text}")
    if looks_like_iso(text):
        _checked(element, kind, text)
        return repr(text)
    if _looks_cron(text):
        raise ToleranceError(f"the timer value '{text}' is a cron expression, which Flowdesk does not run: use an "
                             "ISO 8601 repeating interval such as R/PT1H", element)
    python = _translated(element, text, "timer expression")
    try:
        value = ast.literal_eval(python)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return python  # names process data: only the running instance can tell its value
    if not isinstance(value, str):
        raise ToleranceError(f"the timer value '{text}' is not a text such as \"PT1H\"", element)
    _checked(element, kind, value)
    return python


def _looks_cron(text: str) -> bool:
    fields = text.split()
    return 5 <= len(fields) <= 7 and all(map(_CRON_FIELD.match, fields)) and any(c in text for c in "*?")


def _checked(element, kind: str, value: str) -> None:
    problem = check_timer_value(kind, value)
    if problem:
        raise ToleranceError(problem, element)


def _timers(file_name: str, root, prepared: Prepared, make_executable: bool) -> None:
    for definition in list(root.iter(_bpmn("timerEventDefinition"))):
        if _in_process(definition, set(prepared.skipped_processes)):
            continue
        values = [c for c in definition if _local(c) in TIMER_KINDS]
        event = definition.getparent()
        if not values or not any((v.text or "").strip() for v in values):
            if not make_executable:
                raise ToleranceError(f"the timer of {_label(event)} has no time: give it a duration such as PT1H, "
                                     "a date or a repeating interval", event)
            _untimed_timer(file_name, event, definition, prepared)
            continue
        for value in values:
            value.text = _timer_python(value, _local(value), prepared, file_name)


def _untimed_timer(file_name: str, event, definition, prepared: Prepared) -> None:
    """A descriptive model's timer without a time: a start event loses its timer, a boundary timer (which
    could never fire) is left out with its path, an intermediate one stops the instance when reached."""
    kind = _local(event)
    if kind == "intermediateCatchEvent":
        _make_unsupported(file_name, event, prepared, f"the timer of {_label(event)} has no time")
        return
    prepared.warn(file_name, event, f"the timer of {_label(event)} has no time: " +
                  ("it starts like a plain start event" if kind == "startEvent" else "it never fires"))
    if kind != "boundaryEvent":
        event.remove(definition)
        return
    container = event.getparent()
    gone = {f.get("id") for f in container.findall(_bpmn("sequenceFlow")) if f.get("sourceRef") == event.get("id")}
    for flow in container.findall(_bpmn("sequenceFlow")):
        if flow.get("id") in gone:
            container.remove(flow)
    for ref in list(container.iter(_bpmn("incoming"), _bpmn("outgoing"))):
        if (ref.text or "").strip() in gone:
            ref.getparent().remove(ref)
    container.remove(event)


# -- elements Flowdesk cannot run ------------------------------------------------------
def _make_unsupported(file_name: str, element, prepared: Prepared, reason: str) -> None:
    """Replace an element by a script task that stops the instance with an incident saying why."""
    message = f"{reason}; Flowdesk cannot run it"
    keep = {"incoming", "outgoing", "documentation"}
    for child in list(element):
        if _local(child) not in keep:
            element.remove(child)
    for attr in list(element.attrib):
        if attr not in ("id", "name"):
            del element.attrib[attr]
    element.tag = _bpmn("scriptTask")
    script = etree.SubElement(element, _bpmn("script"))
    script.text = f"{UNSUPPORTED_FUNCTION}({message!r})"
    prepared.warn(file_name, element, f"{message}: deployed, but an instance that reaches it stops with an incident")


def _pass_through(element) -> None:
    """Make a task a script task that does nothing (a plain ``task`` would wait for a person)."""
    for child in list(element):
        if _local(child) in ("script", "extensionElements"):
            element.remove(child)
    for attr in list(element.attrib):
        if attr not in ("id", "name"):
            del element.attrib[attr]
    element.tag = _bpmn("scriptTask")
    etree.SubElement(element, _bpmn("script")).text = "pass"


def _java_implementation(element) -> str | None:
    for attr, value in element.attrib.items():
        qname = etree.QName(attr)
        if qname.namespace in _ENGINE_NAMESPACES and qname.localname in _JAVA_IMPLEMENTATION_ATTRS and value:
            return f"{qname.localname}=\"{value}\""
    ext = element.find(_bpmn("extensionElements"))
    if ext is not None and any(etree.QName(c).localname == "connector" for c in ext if isinstance(c.tag, str)):
        return "a connector"
    implementation = element.get("implementation") or ""
    if implementation and implementation not in ("##unspecified", "##WebService"):
        return f"implementation=\"{implementation}\""
    if element.get("operationRef"):
        return f"operation '{element.get('operationRef')}'"
    return None


def _service_tasks(file_name: str, root, prepared: Prepared, services: set[str], dialect: str) -> None:
    for task in list(root.iter(_bpmn("serviceTask"), _bpmn("sendTask"))):
        ext = task.find(_bpmn("extensionElements"))
        operator = ext.find(f"{{{SPIFF}}}serviceTaskOperator") if ext is not None else None
        zeebe = _zeebe(task, "taskDefinition")
        if operator is not None:
            name = operator.get("id")
            if name not in services:
                _make_unsupported(file_name, task, prepared, f"{_label(task)} calls the service '{name}', which is "
                                                             "not registered")
            continue
        if zeebe is not None and zeebe.get("type"):
            name = zeebe.get("type")
            if name in services and dialect == "spiff":
                etree.SubElement(ext, f"{{{SPIFF}}}serviceTaskOperator", id=name)
            else:
                _make_unsupported(file_name, task, prepared, f"{_label(task)} is done by a '{name}' job worker")
            continue
        implementation = _java_implementation(task)
        if implementation is not None:
            _make_unsupported(file_name, task, prepared, f"{_label(task)} is implemented by {implementation}")
        elif _local(task) == "serviceTask" and dialect == "spiff":
            prepared.warn(file_name, task, f"{_label(task)} has no implementation: it passes straight through")
            _pass_through(task)  # abstract: BPMN's service task without an implementation does nothing


def _script_tasks(file_name: str, root, prepared: Prepared) -> None:
    for task in list(root.iter(_bpmn("scriptTask"))):
        language = (task.get("scriptFormat") or "").strip().lower()
        script = task.find(_bpmn("script"))
        if language not in _PYTHON_SCRIPT_FORMATS:
            _make_unsupported(file_name, task, prepared, f"{_label(task)} is written in {task.get('scriptFormat')}")
        elif script is None or not (script.text or "").strip():
            if any(etree.QName(a).localname == "resource" for a in task.attrib):
                _make_unsupported(file_name, task, prepared, f"{_label(task)} runs a script from an external file")
                continue
            prepared.warn(file_name, task, f"{_label(task)} has no script: it passes straight through")
            _pass_through(task)


def _call_activities(file_name: str, root, prepared: Prepared) -> None:
    for call in list(root.iter(_bpmn("callActivity"))):
        if not (call.get("calledElement") or "").strip():
            _make_unsupported(file_name, call, prepared, f"{_label(call)} names no process to call "
                                                         "(calledElement is empty)")


def _data_stores(file_name: str, root, prepared: Prepared) -> None:
    """Data store references without a data store get one; every data store is warned about (none has an
    implementation here), and a task that reads or writes one stops with an incident."""
    declared = {s.get("id"): s for s in root.iter(_bpmn("dataStore"))}
    warned = set()
    for ref in root.iter(_bpmn("dataStoreReference")):
        if ref.get("dataStoreRef") not in declared:
            store_id = f"{ref.get('id')}__store"
            store = etree.Element(_bpmn("dataStore"), id=store_id, name=ref.get("name") or ref.get("id"))
            first_process = next(root.iter(_bpmn("process")), None)
            if first_process is not None:
                first_process.addprevious(store)
            else:
                root.append(store)
            ref.set("dataStoreRef", store_id)
            declared[store_id] = store
        store = declared[ref.get("dataStoreRef")]
        if store.get("name") is None:
            store.set("name", store.get("id"))
        if store.get("id") not in warned:
            warned.add(store.get("id"))
            prepared.warn(file_name, ref, f"data store '{store.get('name')}' has no implementation in Flowdesk: a "
                                          "task that reads or writes it stops with an incident")


def _foreign_forms(file_name: str, root, prepared: Prepared) -> None:
    for task in root.iter(_bpmn("userTask"), _bpmn("startEvent")):
        for attr, value in list(task.attrib.items()):
            if etree.QName(attr).localname == "formKey" and _FOREIGN_FORM.search(value or ""):
                del task.attrib[attr]
                prepared.warn(file_name, task, f"{_label(task)} names the form '{value}' of another tool; it is "
                                               "shown without form fields")


def prepare_bpmn(file_name: str, root: etree._Element, *, make_executable: bool, services: set[str],
                 dialect: str) -> Prepared:
    """Make one BPMN tree runnable in place; raises :class:`ToleranceError` for what cannot be."""
    prepared = Prepared(id_map=normalise_ids(root))
    try:
        _mark_executable(file_name, root, make_executable, prepared)
        _apply_zeebe(root)
        for container in _containers(root):
            _split_implicitly(container, prepared.id_map)
            _unconditioned_gateway_flows(file_name, container, prepared)
        _translate_expressions(root, set(prepared.skipped_processes))
        _timers(file_name, root, prepared, make_executable)
        _call_activities(file_name, root, prepared)
        _service_tasks(file_name, root, prepared, services, dialect)
        _script_tasks(file_name, root, prepared)
        _data_stores(file_name, root, prepared)
        _foreign_forms(file_name, root, prepared)
    except ToleranceError as err:
        err.element_id = prepared.id_map.get(err.element_id, err.element_id)
        raise
    return prepared

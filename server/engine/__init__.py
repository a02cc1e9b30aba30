"""The only package that imports SpiffWorkflow: parse/validate/deploy bundles,
run instances with bounded engine runs, the restricted script environment and
the registry of service functions BPMN may call."""

from .parsing import BpmnValidationError, ParsedBundle, ParsedProcess, drawable_xml, parse_bundle, xml_text
from .runtime import (
    Engine,
    HumanTaskInfo,
    IncidentInfo,
    MessageWaitInfo,
    NoMessageWaiting,
    RunResult,
    TaskNotReady,
    TimerInfo,
    VersionRef,
)
from .scripting import register_service, registered_services

__all__ = [
    "BpmnValidationError", "Engine", "HumanTaskInfo", "IncidentInfo", "MessageWaitInfo", "NoMessageWaiting",
    "ParsedBundle", "ParsedProcess", "RunResult", "TaskNotReady", "TimerInfo", "VersionRef",
    "drawable_xml", "parse_bundle", "register_service", "registered_services", "xml_text",
]

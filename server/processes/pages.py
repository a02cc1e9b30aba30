"""The designer's pages: processes and their versions on a real BPMN diagram (bpmn-js), upload →
validate → deploy with errors marked on the element they name, editing a diagram into a new
version, and instances with their state painted on the diagram, data, audit trail, incidents and
the retry / suspend / resume / terminate actions."""

from __future__ import annotations

import json

from flask import Blueprint, redirect, render_template, request, url_for

from ..auth.access import client_label, current_principal, roles_required
from ..auth.models import ROLES
from ..db import transaction
from ..engine import BpmnValidationError, drawable_xml, registered_services, xml_text
from ..errors import AppError, ValidationFailed
from ..security.json_depth import check_json_field
from ..web.layout import problem_for_page
from . import deploy, forms, instances
from .models import INSTANCE_STATUSES

pages = Blueprint("designer_pages", __name__, url_prefix="/designer")
DESIGN = ("designer", "admin")
ACTIONS = {"suspend": instances.suspend_instance, "resume": instances.resume_instance,
           "terminate": instances.terminate_instance, "retry": instances.retry_instance}


def _bpmn_problem(err: BpmnValidationError) -> dict:
    where = err.to_dict()
    return {"title": "Invalid BPMN", "detail": err.message, "status": 422, "list": [where], "fields": {}}


def _uploaded_files() -> dict[str, bytes]:
    files = {f.filename: f.read() for f in request.files.getlist("files") if f.filename}
    edited = request.form.get("xml")
    if edited:  # the in-page editor sends the diagram back as text
        files[request.form.get("file_name") or "edited.bpmn"] = edited.encode("utf-8")
    if not files:
        raise ValidationFailed("choose at least one .bpmn or .dmn file",
                               errors=[{"field": "files", "message": "no file chosen"}])
    return files


@pages.route("", methods=["GET", "POST"])
@roles_required(*DESIGN)
def process_list():
    """Deployed processes with their versions; upload a bundle to validate or deploy it."""
    problem, result, uploaded, status = None, None, None, 200
    make_executable = request.form.get("make_executable") == "1"
    if request.method == "POST":
        try:
            files = _uploaded_files()
            uploaded = next(((name, _readable(name, data)) for name, data in files.items()
                             if name.endswith(".bpmn")), None)
            if request.form.get("action") == "deploy":
                with transaction():
                    result = deploy.deploy_bundle(files, source="page", actor=current_principal(),
                                                  client=client_label(), make_executable=make_executable)
            else:
                bundle = deploy.validate_bundle(files, make_executable=make_executable)
                result = [{"process_key": p.process_id, "valid": True, "warnings": p.warnings}
                          for p in bundle.processes]
        except BpmnValidationError as err:
            problem, status = _bpmn_problem(err), 422
        except AppError as err:
            problem, status = problem_for_page(err), err.status
    warnings = _unique_warnings(result or [])
    marks = [{"element": w["element_id"], "message": w["message"]} for w in warnings
             if uploaded and w["file"] == uploaded[0] and w["element_id"]]
    return render_template("designer/processes.html", processes=deploy.list_processes(), problem=problem,
                           result=result, uploaded=uploaded, warnings=warnings, diagram_warnings=marks,
                           make_executable=make_executable), status


@pages.app_template_filter("drawable")
def drawable(spec: dict) -> dict:
    """A diagram spec bpmn-js can draw: ids that are not ``xs:ID`` (which bpmn-js cannot resolve) renamed as
    the engine renames them, and the elements that errors, warnings and states name renamed with them."""
    xml, drawn = drawable_xml(spec["xml"])
    if not drawn:
        return spec
    marks = {key: [_drawn_mark(m, drawn) for m in spec[key]] for key in ("errors", "warnings") if spec.get(key)}
    state = {kind: [drawn.get(e, e) for e in ids] for kind, ids in (spec.get("state") or {}).items()}
    return {**spec, "xml": xml, **marks, **({"state": state} if state else {})}


def _drawn_mark(mark: dict, drawn: dict[str, str]) -> dict:
    """A mark on a renamed element: drawn on the new id, its note naming the id the designer wrote."""
    original = mark.get("element")
    if original not in drawn:
        return mark
    return {**mark, "element": drawn[original], "message": f"{original}: {mark['message']}"}


def _readable(name: str, data: bytes) -> str:
    """An uploaded file as text for the diagram (in the encoding it declares, when it can be read)."""
    try:
        return xml_text(name, data)
    except BpmnValidationError:
        return data.decode("utf-8", "replace")


def _unique_warnings(results: list[dict]) -> list[dict]:
    """The warnings of every deployed process, once each (processes of one file share theirs)."""
    seen, unique = set(), []
    for result in results:
        for warning in result.get("warnings") or []:
            key = (warning["file"], warning["element_id"], warning["message"])
            if key not in seen:
                seen.add(key)
                unique.append(warning)
    return unique


@pages.route("/processes/<process_key>")
@roles_required(*DESIGN)
def process_detail(process_key):
    """A process: its versions, and the chosen version's diagram."""
    versions = deploy.list_versions(process_key)
    chosen = request.args.get("version", type=int) or versions[0].version
    name, xml = deploy.version_xml(process_key, chosen)
    counts = instances.instance_counts(process_key)
    return render_template("designer/process.html", key=process_key, versions=versions, chosen=chosen,
                           file_name=name, xml=xml, counts=counts)


@pages.route("/processes/<process_key>/start", methods=["POST"])
@roles_required(*DESIGN)
def start_from_page(process_key):
    """Start an instance of the latest version with JSON data typed in the page, then show it."""
    check_json_field(request.form.get("data") or "", "data")
    try:
        data = json.loads(request.form.get("data") or "{}")
    except ValueError as err:
        raise ValidationFailed("the start data is not valid JSON",
                               errors=[{"field": "data", "message": f"line {err.lineno}: {err.msg}"}]) from None
    if not isinstance(data, dict):
        raise ValidationFailed("the start data must be a JSON object", errors=[{"field": "data", "message": "{…}"}])
    with transaction():
        view = instances.start_instance(process_key, data, business_key=request.form.get("business_key") or None,
                                        actor=current_principal(), client=client_label())
    return redirect(url_for("designer_pages.instance_detail", instance_id=view["instance"].id))


def _editor_options() -> dict:
    """What the properties panel offers to choose from: the forms in forms/, the roles, the services."""
    return {"forms": forms.form_keys(), "roles": list(ROLES), "services": sorted(registered_services())}


@pages.route("/processes/<process_key>/edit")
@roles_required(*DESIGN)
def process_edit(process_key):
    """Edit a version's diagram in the page (bpmn-js modeler with a properties panel for scripts,
    conditions, forms, timers and services); saving deploys it as a new version."""
    chosen = request.args.get("version", type=int)
    name, xml = deploy.version_xml(process_key, chosen)
    return render_template("designer/edit.html", key=process_key, file_name=name, xml=xml,
                           options=_editor_options())


@pages.route("/instances")
@roles_required(*DESIGN)
def instance_list():
    """Instances filtered by process, status and business key (newest first, paged by id)."""
    args = request.args
    rows = instances.list_instances(process_key=args.get("process") or None, status=args.get("status") or None,
                                    business_key=args.get("business_key") or None, limit=50,
                                    after_id=args.get("after", type=int))
    return render_template("designer/instances.html", instances=rows, statuses=INSTANCE_STATUSES,
                           processes=deploy.list_processes(), filters=args)


@pages.route("/instances/<int:instance_id>")
@roles_required(*DESIGN)
def instance_detail(instance_id, problem=None, status=200):
    """An instance on its diagram (completed, active, failed elements), with data, audit and incidents."""
    view = instances.instance_view(instance_id)
    instance = view["instance"]
    _, xml = deploy.version_xml(instance.process_key, instance.process_version_number)
    return render_template("designer/instance.html", view=view, instance=instance, xml=xml,
                           states=instances.element_states(instance_id), audit=instances.audit_trail(instance_id),
                           problem=problem), status


@pages.route("/instances/<int:instance_id>/<action>", methods=["POST"])
@roles_required(*DESIGN)
def instance_action(instance_id, action):
    """Retry, suspend, resume or terminate an instance from its page (409 when the page was stale)."""
    if action not in ACTIONS:
        raise ValidationFailed(f"unknown action '{action}'")
    kwargs = {"expected_version": request.form.get("version", type=int), "client": client_label()}
    if action == "terminate":
        kwargs["reason"] = request.form.get("reason") or None
    if action == "retry":
        kwargs["to_latest"] = request.form.get("to_latest") == "1"
    try:
        with transaction():
            ACTIONS[action](instance_id, current_principal(), **kwargs)
    except AppError as err:
        return instance_detail(instance_id, problem=problem_for_page(err), status=err.status)
    return redirect(url_for("designer_pages.instance_detail", instance_id=instance_id, done=action))

"""The designer's in-page editor: bpmn-js's icon font loads under our CSP, the properties panel edits
what the engine reads (a script, a user task's form and role), the edit deploys as a new version, and a
large diagram is drawn fitted to its box with working zoom controls."""

from __future__ import annotations

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from server.extensions import db
from server.processes import deploy as deployments

from ..test_sales_flow import SALES_FILES
from .conftest import sign_in

# Collects CSP violations the page reports (a blocked font or image fires one each).
WATCH_CSP = """window.fdViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.fdViolations.push(e.violatedDirective + " " + e.blockedURI));"""
EDITED_SCRIPT = "items = [1, 2, 3]\ntotal = sum(items) * 11"


def _editor(open_page, process_key: str, width: int = 1366, height: int = 900):
    page = open_page(width, height)
    page.add_init_script(WATCH_CSP)
    page.console_problems = []
    page.on("console", lambda m: page.console_problems.append(m.text) if m.type in ("error", "warning") else None)
    sign_in(page, "dora")
    page.goto(f"/designer/processes/{process_key}/edit")
    page.wait_for_selector(".diagram[data-rendered='true']")
    return page


def _bpmn_font_status(page) -> list[str]:
    return page.evaluate("""async () => {
        await document.fonts.ready;
        return [...document.fonts].filter((f) => f.family.replace(/["']/g, "") === "bpmn").map((f) => f.status);
    }""")


def _scale(page) -> float:
    return page.evaluate("document.querySelector('.djs-container svg g.viewport')"
                         ".transform.baseVal.consolidate().matrix.a")


def _drawing_inside_its_box(page) -> bool:
    """The drawing lies within the canvas, right of the palette and below the zoom buttons."""
    return page.evaluate("""() => {
        const box = document.querySelector(".diagram .djs-container").getBoundingClientRect();
        const drawing = document.querySelector(".diagram .djs-container svg g.viewport").getBoundingClientRect();
        const palette = document.querySelector(".diagram .djs-palette").getBoundingClientRect();
        const zoom = document.querySelector(".diagram .fd-zoom").getBoundingClientRect();
        return drawing.width > 0 && drawing.left >= palette.right && drawing.right <= box.right + 1
            && drawing.top >= zoom.bottom && drawing.bottom <= box.bottom + 1;
    }""")


def _click_connection(page, element_id: str) -> None:
    """Click halfway along a flow's line, where a person would."""
    point = page.evaluate("""(id) => {
        const line = document.querySelector(`.djs-connection[data-element-id="${id}"] .djs-hit`);
        const middle = line.getPointAtLength(line.getTotalLength() / 2);
        const screen = middle.matrixTransform(line.getScreenCTM());
        return { x: screen.x, y: screen.y };
    }""", element_id)
    page.mouse.click(point["x"], point["y"])


def _open_list_item(item) -> None:
    """Open a properties-panel list item (a new one may already have opened itself)."""
    name = item.get_by_label("Name")
    for _ in range(3):
        if name.is_visible():
            return
        item.locator(".bio-properties-panel-collapsible-entry-header").click()
        try:
            name.wait_for(state="visible", timeout=3000)
        except PlaywrightTimeout:
            continue
    assert name.is_visible(), "the parameter's fields open"


def _deployed_xml(app, process_key: str, version: int) -> str:
    with app.app_context():
        _, xml = deployments.version_xml(process_key, version)
        db.session.remove()
    return xml


def _deploy_from_the_editor(page, process_key: str, version: int) -> None:
    with page.expect_navigation():  # the XML is saved from the modeler first, then the form is sent
        page.get_by_role("button", name="Deploy as a new version").click()
    assert f"{process_key} deployed as version {version}" in page.get_by_role("status").inner_text(), \
        page.inner_text("main")[:600]


def _no_refusals(page) -> None:
    assert page.evaluate("window.fdViolations") == [], "nothing was refused by the CSP"
    assert not [m for m in page.console_problems if "font" in m.lower() or "Content Security" in m]
    assert page.errors == []


def test_a_designer_edits_a_script_and_a_form_in_the_properties_panel_and_deploys_them(
        app, deploy, start, make_user, open_page, output_dir):
    deploy("reference_cycle.bpmn")
    make_user("designer", username="dora")
    page = _editor(open_page, "reference_cycle")

    assert _bpmn_font_status(page) == ["loaded"], "bpmn-js's icon font loads from our origin"
    icon = page.locator(".djs-palette .entry.bpmn-icon-task")
    assert icon.evaluate("(e) => getComputedStyle(e, '::before').fontFamily").strip("\"'") == "bpmn"
    assert icon.bounding_box()["width"] > 20, "the palette icon is drawn"

    page.locator(".djs-shape[data-element-id='compute_total']").click()
    script = page.locator("[data-entry-id='fd-script-body'] textarea")
    assert script.input_value() == "items = [1, 2, 3]\ntotal = sum(items) * 7"
    script.fill(EDITED_SCRIPT)
    page.screenshot(path=str(output_dir / "script-in-properties-panel.png"), full_page=True)

    page.locator(".djs-shape[data-element-id='review_total']").click()
    form = page.locator("[data-entry-id='fd-form-key'] select")
    assert form.input_value() == "reference_review", "the task's formKey is shown"
    page.locator("[data-entry-id='fd-candidate-role'] select").select_option("sales_rep")
    page.screenshot(path=str(output_dir / "form-in-properties-panel.png"), full_page=True)

    _deploy_from_the_editor(page, "reference_cycle", 2)
    _no_refusals(page)
    xml = _deployed_xml(app, "reference_cycle", 2)
    assert "total = sum(items) * 11" in xml, "the new version holds the edited script"
    assert 'name="formKey" value="reference_review"' in xml
    assert 'name="candidateRole" value="sales_rep"' in xml
    assert start("reference_cycle")["data"]["total"] == 66, "the engine runs the edited script"


def test_a_designer_turns_a_script_task_into_a_service_call_in_the_properties_panel(
        app, deploy, start, make_user, open_page, output_dir):
    deploy("reference_cycle.bpmn")
    make_user("designer", username="dora")
    page = _editor(open_page, "reference_cycle")
    page.locator(".djs-shape[data-element-id='compute_total']").click()
    page.locator(".djs-context-pad [data-action='replace']").click()
    page.locator(".djs-popup [data-id='replace-with-service-task']").click()
    page.locator("[data-entry-id='fd-service-operator'] select").select_option("now_iso")
    result = page.locator("[data-entry-id='fd-service-result'] input")
    result.fill("stamped_at")
    result.press("Enter")  # stays in the editor: Enter in a panel field does not send the page's form
    parameters = page.locator("[data-group-id='group-fd-service-parameters']")
    parameters.get_by_title("Create").click()
    item = parameters.locator(".bio-properties-panel-list-item")
    assert item.count() == 1
    _open_list_item(item)
    item.get_by_label("Name").fill("unused")
    item.get_by_label("Value (Python expression)").fill("1 + 1")
    page.screenshot(path=str(output_dir / "service-task.png"), full_page=True)
    item.hover()
    parameters.get_by_title("Delete item").click()  # now_iso takes none
    assert parameters.locator(".bio-properties-panel-list-item").count() == 0

    _deploy_from_the_editor(page, "reference_cycle", 2)
    _no_refusals(page)
    xml = _deployed_xml(app, "reference_cycle", 2)
    assert '<spiffworkflow:serviceTaskOperator id="now_iso" resultVariable="stamped_at">' in xml
    assert start("reference_cycle")["data"]["stamped_at"].startswith("20"), "the engine called the service"


def test_a_designer_draws_lanes_and_names_them_after_roles(app, deploy, start, make_user, open_page, output_dir):
    deploy("reference_cycle.bpmn")
    make_user("designer", username="dora")
    page = _editor(open_page, "reference_cycle")
    page.locator(".djs-palette [data-action='create.participant-expanded']").click()
    box = page.locator(".diagram").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.8)  # the pool wraps the process
    page.keyboard.type("Reference team")  # a new pool opens its name for typing
    page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.95)
    pool = page.locator(".djs-shape[data-element-id^='Participant_']")
    pool.click(position={"x": 15, "y": 40})
    page.locator(".djs-context-pad [data-action='lane-divide-two']").click()
    lanes = page.locator(".djs-shape[data-element-id^='Lane_']")
    assert lanes.count() == 2
    lanes.first.click(position={"x": 15, "y": 20})
    page.locator("[data-group-id='group-general'] .bio-properties-panel-group-header").click()
    assert "role it is named after" in page.locator("[data-entry-id='fd-lane-hint']").inner_text()
    page.get_by_label("Name", exact=True).fill("Sales reps")
    page.screenshot(path=str(output_dir / "lanes.png"), full_page=True)

    _deploy_from_the_editor(page, "reference_cycle", 2)
    _no_refusals(page)
    assert 'name="Sales reps"' in _deployed_xml(app, "reference_cycle", 2)
    detail = start("reference_cycle")
    assert [(t["lane"], t["candidate_role"]) for t in detail["tasks"]] == [("Sales reps", "sales_rep")], \
        "the engine reads the task's lane, and the lane names its role"


def test_a_large_diagram_is_fitted_and_zooms_and_its_timers_and_conditions_show(
        deploy, make_user, open_page, output_dir):
    deploy(*SALES_FILES)
    make_user("designer", username="dora")
    page = _editor(open_page, "lead_to_contract")
    assert _drawing_inside_its_box(page), "the whole process is in view"
    page.screenshot(path=str(output_dir / "fitted-1366.png"), full_page=True)

    fitted = _scale(page)
    page.get_by_role("button", name="Zoom in").click()
    assert _scale(page) > fitted
    page.get_by_role("button", name="Fit to view").click()
    assert abs(_scale(page) - fitted) < 1e-6 and _drawing_inside_its_box(page)

    page.locator(".djs-shape[data-element-id='contact_reminder']").click()
    timer = page.locator("[data-entry-id='timerEventDefinitionValue'] input")
    assert timer.input_value() == '"P2D"'
    assert "quoted ISO 8601" in page.locator("[data-entry-id='fd-timer-hint']").inner_text()
    _click_connection(page, "f_qualified")
    condition = page.locator("[data-entry-id='fd-condition-expression'] textarea")
    assert condition.input_value() == "qualified"
    page.screenshot(path=str(output_dir / "condition-1366.png"), full_page=True)
    assert page.evaluate("window.fdViolations") == [] and page.errors == []

    phone = _editor(open_page, "lead_to_contract", 375, 812)
    assert _drawing_inside_its_box(phone)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375, "no sideways scrolling on a phone"
    phone.screenshot(path=str(output_dir / "fitted-375.png"), full_page=True)

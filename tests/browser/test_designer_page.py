"""A designer deploys a BPMN from the page and sees an instance's active task highlighted."""

from __future__ import annotations

from pathlib import Path

from .conftest import sign_in

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def test_designer_deploys_and_sees_the_active_task_highlighted(open_page, make_user, output_dir):
    make_user("designer", username="dora")
    page = open_page()
    sign_in(page, "dora")
    page.goto("/designer")
    page.get_by_label("BPMN / DMN files").set_input_files(str(WORKFLOWS / "reference_cycle.bpmn"))
    page.get_by_role("button", name="Deploy").click()
    status = page.get_by_role("status")
    assert "deployed as version 1" in status.inner_text()
    status.get_by_role("link", name="open").click()

    page.get_by_role("button", name="Start", exact=True).click()
    page.wait_for_selector(".diagram[data-rendered='true']")
    active = page.locator(".djs-element.fd-active[data-element-id='review_total']")
    assert active.count() == 1, "the waiting user task is painted active"
    assert page.locator(".djs-element.fd-completed[data-element-id='compute_total']").count() == 1
    page.screenshot(path=str(output_dir / "instance.png"), full_page=True)
    assert page.errors == []

    # The in-page editor hands its XML back to the same validation as an upload.
    page.goto("/designer/processes/reference_cycle/edit")
    page.wait_for_selector(".diagram[data-rendered='true']")
    with page.expect_navigation():  # the XML is saved from the modeler first, then the form is sent
        page.get_by_role("button", name="Validate").click()
    assert "reference_cycle is valid" in page.inner_text("main"), page.inner_text("main")[:600]

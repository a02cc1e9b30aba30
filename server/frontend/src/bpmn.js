// The designer pages' diagram: bpmn-js renders a process (laid out by bpmn-auto-layout when the file
// carries no diagram), paints an instance's state on it, marks validation errors on their elements,
// and, on the edit page, lets the designer change the model and hand back its XML.
import NavigatedViewer from "bpmn-js/lib/NavigatedViewer";
import Modeler from "bpmn-js/lib/Modeler";
import { layoutProcess } from "bpmn-auto-layout";

const STATE_CLASSES = { completed: "fd-completed", active: "fd-active", failed: "fd-failed" };

function hasDiagram(xml) {
  return /<(\w+:)?BPMNDiagram[\s>]/.test(xml);
}

async function prepare(xml) {
  return hasDiagram(xml) ? xml : layoutProcess(xml);
}

function readJson(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

function paint(viewer, state) {
  const canvas = viewer.get("canvas");
  const registry = viewer.get("elementRegistry");
  for (const [kind, cls] of Object.entries(STATE_CLASSES)) {
    for (const id of state[kind] || []) {
      if (registry.get(id)) canvas.addMarker(id, cls);
    }
  }
}

// Mark each {element, message} on its element (ids as the designer wrote them, spaces and all) with a
// note: errors in the failed style, deploy warnings in the warning style.
function markErrors(viewer, errors, marker = "fd-failed", noteClass = "fd-error-note") {
  const overlays = viewer.get("overlays");
  const registry = viewer.get("elementRegistry");
  const canvas = viewer.get("canvas");
  for (const error of errors || []) {
    if (!error.element || !registry.get(error.element)) continue;
    canvas.addMarker(error.element, marker);
    const note = document.createElement("div");
    note.className = noteClass;
    note.setAttribute("role", "note");
    note.textContent = error.message;
    overlays.add(error.element, { position: { bottom: -4, left: 0 }, html: note });
  }
}

// Render every [data-bpmn] container on the page: data-bpmn names a JSON block with
// {xml, state?, errors?, warnings?, editable?}; an editable diagram writes its XML into data-bpmn-output on submit.
async function mount(container) {
  const spec = readJson(container.dataset.bpmn);
  const Kind = spec.editable ? Modeler : NavigatedViewer;
  const viewer = new Kind({ container });
  try {
    await viewer.importXML(await prepare(spec.xml));
  } catch (err) {
    container.textContent = container.dataset.failText || "The diagram could not be drawn.";
    return;
  }
  viewer.get("canvas").zoom("fit-viewport");
  if (spec.state) paint(viewer, spec.state);
  if (spec.errors) markErrors(viewer, spec.errors);
  if (spec.warnings) markErrors(viewer, spec.warnings, "fd-warning", "fd-warning-note");
  container.dataset.rendered = "true";
  const output = container.dataset.bpmnOutput && document.getElementById(container.dataset.bpmnOutput);
  if (output) {
    output.form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const { xml } = await viewer.saveXML({ format: true });
      output.value = xml;
      // form.submit() sends no button: carry the one pressed (validate / deploy) in a hidden field.
      if (event.submitter && event.submitter.name) {
        const pressed = document.createElement("input");
        pressed.type = "hidden";
        pressed.name = event.submitter.name;
        pressed.value = event.submitter.value;
        output.form.appendChild(pressed);
      }
      output.form.submit();
    });
  }
}

document.querySelectorAll("[data-bpmn]").forEach(mount);

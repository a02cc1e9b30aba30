// What the viewer and the editor bundles share: reading a page's diagram spec, laying out a process
// that carries no diagram (bpmn-auto-layout), painting an instance's state, marking validation errors
// on their elements, and zoom controls (+ / − / fit) over the canvas.
import { layoutProcess } from "bpmn-auto-layout";

const STATE_CLASSES = { completed: "fd-completed", active: "fd-active", failed: "fd-failed" };
const ZOOM_STEP = 1.25;

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

/** The page's translations of our diagram texts (English text → the page's language). */
export function pageLabels() {
  return readJson("fd-diagram-labels") || {};
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

function markErrors(viewer, errors) {
  const overlays = viewer.get("overlays");
  const registry = viewer.get("elementRegistry");
  const canvas = viewer.get("canvas");
  for (const error of errors || []) {
    if (!error.element || !registry.get(error.element)) continue;
    canvas.addMarker(error.element, "fd-failed");
    const note = document.createElement("div");
    note.className = "fd-error-note";
    note.setAttribute("role", "note");
    note.textContent = error.message;
    overlays.add(error.element, { position: { bottom: -4, left: 0 }, html: note });
  }
}

const FIT_PADDING = 12;

// How much of the canvas's edges our overlays cover (the modeler's palette on the left, the zoom
// buttons on the top right), in screen pixels.
function coveredEdges(container) {
  const box = container.getBoundingClientRect();
  const palette = container.querySelector(".djs-palette");
  const zoom = container.querySelector(".fd-zoom");
  return {
    left: palette ? palette.getBoundingClientRect().right - box.left : 0,
    top: zoom ? zoom.getBoundingClientRect().bottom - box.top : 0,
  };
}

/** The whole diagram in view beside the palette and below the zoom buttons (never magnified past
 * 100 %), centred in what is left. */
export function fit(viewer, container) {
  const canvas = viewer.get("canvas");
  const { inner, outer } = canvas.viewbox();
  if (!inner.width || !inner.height) return;
  const covered = coveredEdges(container);
  const left = covered.left + FIT_PADDING;
  const top = covered.top + FIT_PADDING;
  const room = { width: outer.width - left - FIT_PADDING, height: outer.height - top - FIT_PADDING };
  const scale = Math.min(1, room.width / inner.width, room.height / inner.height);
  canvas.viewbox({
    x: inner.x - (left + (room.width - inner.width * scale) / 2) / scale,
    y: inner.y - (top + (room.height - inner.height * scale) / 2) / scale,
    width: outer.width / scale,
    height: outer.height / scale,
  });
}

function zoomButton(label, title, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "secondary";
  button.textContent = label;
  button.title = title;
  button.setAttribute("aria-label", title);
  button.addEventListener("click", onClick);
  return button;
}

// Buttons over the canvas's corner: a phone has no mouse wheel, and a large model drawn to fit may
// need a closer look.
function addZoomControls(viewer, container) {
  const labels = pageLabels();
  const canvas = viewer.get("canvas");
  const t = (text) => labels[text] || text;
  const bar = document.createElement("div");
  bar.className = "fd-zoom";
  bar.setAttribute("role", "toolbar");
  bar.setAttribute("aria-label", t("Zoom"));
  bar.append(
    zoomButton("+", t("Zoom in"), () => canvas.zoom(canvas.zoom() * ZOOM_STEP, "auto")),
    zoomButton("−", t("Zoom out"), () => canvas.zoom(canvas.zoom() / ZOOM_STEP, "auto")),
    zoomButton("⤢", t("Fit to view"), () => fit(viewer, container)),
  );
  container.append(bar);
}

/**
 * Render every [data-bpmn] container on the page: data-bpmn names a JSON block with
 * {xml, state?, errors?, options?}; ``create(container, spec)`` builds the bpmn-js instance and
 * ``ready(viewer, container, spec)`` (optional) finishes the page's own wiring once it is drawn.
 */
export function mountAll(create, ready) {
  document.querySelectorAll("[data-bpmn]").forEach(async (container) => {
    const spec = readJson(container.dataset.bpmn);
    const viewer = create(container, spec);
    try {
      await viewer.importXML(await prepare(spec.xml));
    } catch (err) {
      container.textContent = container.dataset.failText || "The diagram could not be drawn.";
      return;
    }
    addZoomControls(viewer, container);
    fit(viewer, container);
    window.addEventListener("resize", () => viewer.get("canvas").resized());
    if (spec.state) paint(viewer, spec.state);
    if (spec.errors) markErrors(viewer, spec.errors);
    if (ready) ready(viewer, container, spec);
    container.dataset.rendered = "true";
  });
}

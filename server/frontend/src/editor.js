// The designer's edit page: bpmn-js's modeler with the properties panel (bpmn-js-properties-panel's
// BPMN provider plus ours for the spiffworkflow extensions our engine reads). On submit the page's
// form gets the model's XML and is sent to the same validate / deploy as an upload.
import Modeler from "bpmn-js/lib/Modeler";
import { BpmnPropertiesPanelModule, BpmnPropertiesProviderModule } from "bpmn-js-properties-panel";
import { mountAll, pageLabels } from "./diagram.js";
import FlowdeskPropertiesModule from "./properties.js";
import spiffworkflow from "./spiffworkflow-moddle.json";

// bpmn-js's translate(template, replacements), answered from the labels the page hands in.
function translator(labels) {
  return (template, replacements = {}) =>
    (labels[template] || template).replace(/{([^}]+)}/g, (_, key) => replacements[key] ?? `{${key}}`);
}

function create(container, spec) {
  return new Modeler({
    container,
    propertiesPanel: { parent: document.getElementById(container.dataset.propertiesPanel) },
    moddleExtensions: { spiffworkflow },
    additionalModules: [
      BpmnPropertiesPanelModule,
      BpmnPropertiesProviderModule,
      FlowdeskPropertiesModule,
      { translate: ["value", translator(pageLabels())], flowdeskOptions: ["value", spec.options || {}] },
    ],
  });
}

// Hand the XML to the form on submit: first finish a label being typed on the canvas and every
// properties-panel edit still waiting out its debounce.
function wireForm(viewer, container) {
  const output = container.dataset.bpmnOutput && document.getElementById(container.dataset.bpmnOutput);
  if (!output) return;
  // Enter in a properties-panel field would submit the page's form (and leave the editor).
  const panel = document.getElementById(container.dataset.propertiesPanel);
  panel?.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target instanceof HTMLInputElement) event.preventDefault();
  });
  output.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    viewer.get("directEditing").complete();
    viewer.get("debounceInput").flushAll();
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

mountAll(create, wireForm);

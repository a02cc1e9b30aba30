// The editor's properties panel for what our engine reads from a model (server/engine/): a script
// task's script, a flow's condition, a call activity's called process, a business rule task's DMN
// decision, a user task's form and assignment (spiffworkflow:properties), pre-/post-scripts and a
// service task's operator with its parameters (SpiffWorkflow's spiff dialect). Timers, messages, names
// and documentation come from bpmn-js-properties-panel's own BPMN provider; we add hints to those.
import {
  isSelectEntryEdited,
  isTextAreaEntryEdited,
  isTextFieldEntryEdited,
  Group,
  ListGroup,
  SelectEntry,
  TextAreaEntry,
  TextFieldEntry,
} from "@bpmn-io/properties-panel";
import { h } from "@bpmn-io/properties-panel/preact";
import { useService } from "bpmn-js-properties-panel";
import { getBusinessObject, is, isAny } from "bpmn-js/lib/util/ModelUtil";
import { debounce } from "min-dash";

const DEBOUNCE_MS = 300;
const CONDITIONAL_SOURCES = ["bpmn:ExclusiveGateway", "bpmn:InclusiveGateway", "bpmn:ComplexGateway", "bpmn:Activity"];
const HUMAN_TASKS = ["bpmn:UserTask", "bpmn:ManualTask"];

// -- moddle edits (one undoable command each) -------------------------------------------------------

function update(element, moddleElement, properties) {
  return { cmd: "element.updateModdleProperties", context: { element, moddleElement, properties } };
}

function run(commandStack, commands) {
  if (commands.length) commandStack.execute("properties-panel.multi-command-executor", commands);
}

function extensionOf(bo, type) {
  const values = bo.get("extensionElements")?.get("values") || [];
  return values.find((value) => is(value, type));
}

function addExtension(element, bo, child, bpmnFactory) {
  const commands = [];
  let container = bo.get("extensionElements");
  if (!container) {
    container = bpmnFactory.create("bpmn:ExtensionElements", { values: [] });
    container.$parent = bo;
    commands.push(update(element, bo, { extensionElements: container }));
  }
  child.$parent = container;
  commands.push(update(element, container, { values: [...container.get("values"), child] }));
  return commands;
}

function removeExtension(element, bo, child) {
  const container = bo.get("extensionElements");
  const rest = container.get("values").filter((value) => value !== child);
  // An empty <bpmn:extensionElements/> is noise in the file: drop it with its last child.
  return [rest.length ? update(element, container, { values: rest }) : update(element, bo, { extensionElements: undefined })];
}

function propertyOf(bo, name) {
  const list = extensionOf(bo, "spiffworkflow:Properties");
  return list && list.get("values").find((property) => property.get("name") === name);
}

// Set (or, given "", remove) one <spiffworkflow:property name=… value=…/>.
function setProperty(element, name, value, bpmnFactory, commandStack) {
  const bo = getBusinessObject(element);
  const list = extensionOf(bo, "spiffworkflow:Properties");
  const current = propertyOf(bo, name);
  if (!value) {
    if (!current) return;
    const rest = list.get("values").filter((property) => property !== current);
    run(commandStack, rest.length ? [update(element, list, { values: rest })] : removeExtension(element, bo, list));
    return;
  }
  if (current) {
    run(commandStack, [update(element, current, { value })]);
    return;
  }
  const property = bpmnFactory.create("spiffworkflow:Property", { name, value });
  if (list) {
    property.$parent = list;
    run(commandStack, [update(element, list, { values: [...list.get("values"), property] })]);
    return;
  }
  const created = bpmnFactory.create("spiffworkflow:Properties", { values: [property] });
  property.$parent = created;
  run(commandStack, addExtension(element, bo, created, bpmnFactory));
}

// Set (or remove) an extension element whose text is its value (<spiffworkflow:preScript>…).
function setBodyExtension(element, type, value, bpmnFactory, commandStack) {
  const bo = getBusinessObject(element);
  const current = extensionOf(bo, type);
  if (!value) {
    if (current) run(commandStack, removeExtension(element, bo, current));
  } else if (current) {
    run(commandStack, [update(element, current, { value })]);
  } else {
    run(commandStack, addExtension(element, bo, bpmnFactory.create(type, { value }), bpmnFactory));
  }
}

function withCurrent(options, current) {
  const choices = [{ value: "", label: "—" }, ...options.map((value) => ({ value, label: value }))];
  if (current && !options.includes(current)) choices.push({ value: current, label: current });
  return choices;
}

// -- entries (preact components) ------------------------------------------------------------------

// A text entry of ours (a text area when multiline): translated label and description, debounced typing.
// A helper the components below call once, so their hooks keep their order.
function TextEntry({ element, id, label, description, multiline }, getValue, setValue) {
  const translate = useService("translate");
  const debounce = useService("debounceInput");
  return h(multiline ? TextAreaEntry : TextFieldEntry, {
    element, id, label: translate(label), description: description && translate(description),
    debounce, monospace: Boolean(multiline), rows: 2, autoResize: true, getValue, setValue,
  });
}

function BodyExtensionEntry(props) {
  const bpmnFactory = useService("bpmnFactory");
  const commandStack = useService("commandStack");
  const { element, type } = props;
  return TextEntry(props, () => extensionOf(getBusinessObject(element), type)?.get("value") || "",
    (value) => setBodyExtension(element, type, value, bpmnFactory, commandStack));
}

function PropertyEntry(props) {
  const bpmnFactory = useService("bpmnFactory");
  const commandStack = useService("commandStack");
  const translate = useService("translate");
  const { element, id, name, label, description, options } = props;
  const getValue = () => propertyOf(getBusinessObject(element), name)?.get("value") || "";
  const setValue = (value) => setProperty(element, name, value, bpmnFactory, commandStack);
  if (!options) return TextEntry(props, getValue, setValue);
  return h(SelectEntry, {
    element, id, label: translate(label), description: description && translate(description), getValue, setValue,
    getOptions: () => withCurrent(options, getValue()),
  });
}

function AttributeEntry(props) {
  const modeling = useService("modeling");
  const { element, attribute } = props;
  return TextEntry(props, () => getBusinessObject(element).get(attribute) || "",
    (value) => modeling.updateProperties(element, { [attribute]: value || undefined }));
}

function ConditionEntry(props) {
  const bpmnFactory = useService("bpmnFactory");
  const commandStack = useService("commandStack");
  const modeling = useService("modeling");
  const { element } = props;
  const bo = getBusinessObject(element);
  return TextEntry({ ...props, multiline: true, label: "Condition expression",
    description: "Python, true to take this flow, e.g. total > 1000" },
  () => bo.get("conditionExpression")?.get("body") || "",
  (value) => {
    const current = bo.get("conditionExpression");
    if (!value) modeling.updateProperties(element, { conditionExpression: undefined });
    else if (current) run(commandStack, [update(element, current, { body: value })]);
    else modeling.updateProperties(element, { conditionExpression: bpmnFactory.create("bpmn:FormalExpression", { body: value }) });
  });
}

function Hint({ id, text }) {
  const translate = useService("translate");
  return h("div", { class: "bio-properties-panel-entry", "data-entry-id": id },
    h("p", { class: "bio-properties-panel-description" }, translate(text)));
}

// Service task: <spiffworkflow:serviceTaskOperator id=… resultVariable=…><spiffworkflow:parameters>…
function operatorOf(element) {
  return extensionOf(getBusinessObject(element), "spiffworkflow:ServiceTaskOperator");
}

function OperatorEntry({ element, id, services }) {
  const bpmnFactory = useService("bpmnFactory");
  const commandStack = useService("commandStack");
  const translate = useService("translate");
  const getValue = () => operatorOf(element)?.get("id") || "";
  const setValue = (value) => {
    const bo = getBusinessObject(element);
    const current = operatorOf(element);
    if (!value) {
      if (current) run(commandStack, removeExtension(element, bo, current));
    } else if (current) {
      run(commandStack, [update(element, current, { id: value })]);
    } else {
      // SpiffWorkflow's schema wants <parameters> even when there are none.
      const parameterList = bpmnFactory.create("spiffworkflow:Parameters", { values: [] });
      const operator = bpmnFactory.create("spiffworkflow:ServiceTaskOperator", { id: value, parameterList });
      parameterList.$parent = operator;
      run(commandStack, addExtension(element, bo, operator, bpmnFactory));
    }
  };
  return h(SelectEntry, {
    element, id, label: translate("Service"), getValue, setValue,
    description: translate("A function registered for BPMN service tasks"),
    getOptions: () => withCurrent(services, getValue()),
  });
}

function OperatorAttributeEntry(props) {
  const commandStack = useService("commandStack");
  const { element, target, attribute } = props;
  return TextEntry(props, () => target.get(attribute) || "",
    (value) => run(commandStack, [update(element, target, { [attribute]: value || undefined })]));
}

// -- groups ---------------------------------------------------------------------------------------

function entry(id, component, isEdited, props = {}) {
  return { id, component, isEdited, ...props };
}

function scriptGroup(element, translate) {
  if (!is(element, "bpmn:ScriptTask")) return null;
  return {
    id: "fd-script", label: translate("Script"), component: Group, shouldOpen: true,
    entries: [entry("fd-script-body", AttributeEntry, isTextAreaEntryEdited, {
      attribute: "script", label: "Script (Python)", multiline: true,
      description: "Runs with the task data as its variables; assign to a name to store it",
    })],
  };
}

function conditionGroup(element, translate) {
  const bo = getBusinessObject(element);
  if (!is(element, "bpmn:SequenceFlow") || !isAny(bo.sourceRef, CONDITIONAL_SOURCES)) return null;
  const isDefault = bo.sourceRef.get("default") === bo;
  return {
    id: "fd-condition", label: translate("Condition"), component: Group, shouldOpen: true,
    entries: isDefault ? [entry("fd-condition-default", Hint, null, { text: "The default flow: taken when no other condition holds" })]
      : [entry("fd-condition-expression", ConditionEntry, isTextAreaEntryEdited)],
  };
}

function formGroup(element, translate, options) {
  if (!isAny(element, HUMAN_TASKS)) return null;
  return {
    id: "fd-form", label: translate("Form and assignment"), component: Group, shouldOpen: true,
    entries: [
      entry("fd-form-key", PropertyEntry, isSelectEntryEdited, { name: "formKey", label: "Form", options: options.forms || [],
        description: "The JSON schema in forms/ the task asks for" }),
      entry("fd-candidate-role", PropertyEntry, isSelectEntryEdited, { name: "candidateRole", label: "Candidate role",
        options: options.roles || [], description: "Who may claim the task (else the lane's role)" }),
      entry("fd-candidate-role-variable", PropertyEntry, isTextFieldEntryEdited, { name: "candidateRoleVariable",
        label: "Candidate role from variable", description: "A task-data variable naming the role; wins over the role above" }),
      entry("fd-assignee-variable", PropertyEntry, isTextFieldEntryEdited, { name: "assigneeVariable",
        label: "Assignee from variable", description: "A task-data variable holding the user id the task is assigned to" }),
    ],
  };
}

function decisionGroup(element, translate) {
  if (!is(element, "bpmn:BusinessRuleTask")) return null;
  return {
    id: "fd-decision", label: translate("Decision"), component: Group, shouldOpen: true,
    entries: [entry("fd-called-decision", BodyExtensionEntry, isTextFieldEntryEdited, {
      type: "spiffworkflow:CalledDecisionId", label: "DMN decision id",
      description: "A decision in a .dmn file deployed with this process" })],
  };
}

function callActivityGroup(element, translate) {
  if (!is(element, "bpmn:CallActivity")) return null;
  return {
    id: "fd-call", label: translate("Called process"), component: Group, shouldOpen: true,
    entries: [entry("fd-called-element", AttributeEntry, isTextFieldEntryEdited, {
      attribute: "calledElement", label: "Process id", description: "The id of a process deployed with this one" })],
  };
}

function scriptsAroundGroup(element, translate) {
  if (!is(element, "bpmn:Activity")) return null;
  return {
    id: "fd-pre-post", label: translate("Pre- and post-scripts"), component: Group,
    entries: [
      entry("fd-pre-script", BodyExtensionEntry, isTextAreaEntryEdited, { type: "spiffworkflow:PreScript",
        label: "Before the task (Python)", multiline: true }),
      entry("fd-post-script", BodyExtensionEntry, isTextAreaEntryEdited, { type: "spiffworkflow:PostScript",
        label: "After the task (Python)", multiline: true }),
    ],
  };
}

function parameterItems(element, operator, commandStack) {
  const list = operator.get("parameterList");
  const parameters = list ? list.get("values") : [];
  return parameters.map((parameter, index) => ({
    id: `${element.id}-parameter-${index}`,
    label: parameter.get("id") || "",
    entries: [
      entry(`${element.id}-parameter-${index}-id`, OperatorAttributeEntry, isTextFieldEntryEdited,
        { target: parameter, attribute: "id", label: "Name" }),
      entry(`${element.id}-parameter-${index}-value`, OperatorAttributeEntry, isTextFieldEntryEdited,
        { target: parameter, attribute: "value", label: "Value (Python expression)" }),
    ],
    autoFocusEntry: `${element.id}-parameter-${index}-id`,
    remove: () => run(commandStack, [update(element, list, { values: parameters.filter((p) => p !== parameter) })]),
  }));
}

function serviceGroups(element, translate, options, injector) {
  if (!is(element, "bpmn:ServiceTask")) return [];
  const operator = operatorOf(element);
  const groups = [{
    id: "fd-service", label: translate("Service"), component: Group, shouldOpen: true,
    entries: [entry("fd-service-operator", OperatorEntry, isSelectEntryEdited, { services: options.services || [] }),
      ...(operator ? [entry("fd-service-result", OperatorAttributeEntry, isTextFieldEntryEdited, {
        target: operator, attribute: "resultVariable", label: "Result variable",
        description: "Where the service's answer is stored in the task data" })] : [])],
  }];
  if (operator) {
    const commandStack = injector.get("commandStack");
    const bpmnFactory = injector.get("bpmnFactory");
    groups.push({
      id: "fd-service-parameters", label: translate("Service parameters"), component: ListGroup, shouldOpen: true,
      items: parameterItems(element, operator, commandStack),
      add: (event) => {
        event.stopPropagation();
        const list = operator.get("parameterList");
        const parameter = bpmnFactory.create("spiffworkflow:Parameter",
          { id: `param_${(list ? list.get("values").length : 0) + 1}`, type: "any", value: "" });
        if (list) {
          parameter.$parent = list;
          run(commandStack, [update(element, list, { values: [...list.get("values"), parameter] })]);
        } else {
          const created = bpmnFactory.create("spiffworkflow:Parameters", { values: [parameter] });
          parameter.$parent = created;
          created.$parent = operator;
          run(commandStack, [update(element, operator, { parameterList: created })]);
        }
      },
    });
  }
  return groups;
}

function addHints(groups, element) {
  const timer = groups.find((group) => group.id === "timer");
  if (timer) {
    timer.entries.push(entry("fd-timer-hint", Hint, null,
      { text: "A Python expression: a quoted ISO 8601 value such as \"PT4H\", or a variable holding one" }));
  }
  const general = groups.find((group) => group.id === "general");
  if (general && is(element, "bpmn:Lane")) {
    general.entries.push(entry("fd-lane-hint", Hint, null,
      { text: "Tasks in a lane go to the role it is named after (\"Dispatchers\" → dispatcher) unless they name a candidate role" }));
  }
}

class FlowdeskPropertiesProvider {
  constructor(propertiesPanel, injector, translate, flowdeskOptions) {
    this._injector = injector;
    this._translate = translate;
    this._options = flowdeskOptions || {};
    propertiesPanel.registerProvider(500, this);
  }

  getGroups(element) {
    return (groups) => {
      const t = this._translate;
      const ours = [scriptGroup(element, t), conditionGroup(element, t), formGroup(element, t, this._options),
        decisionGroup(element, t), callActivityGroup(element, t),
        ...serviceGroups(element, t, this._options, this._injector), scriptsAroundGroup(element, t)]
        .filter(Boolean);
      addHints(groups, element);
      const at = groups.findIndex((group) => group.id === "general") + 1;
      groups.splice(at, 0, ...ours);
      return groups;
    };
  }
}
FlowdeskPropertiesProvider.$inject = ["propertiesPanel", "injector", "translate", "flowdeskOptions"];

// The properties panel debounces typing; the page must write every pending edit before it saves
// the XML (a designer types a script and presses Deploy at once), so we keep the pending ones.
function flushableDebounce() {
  const pending = new Set();
  function debounceInput(fn) {
    const debounced = debounce((...args) => {
      pending.delete(debounced);
      fn(...args);
    }, DEBOUNCE_MS);
    const call = (...args) => {
      pending.add(debounced);
      debounced(...args);
    };
    call.flush = () => debounced.flush();
    call.cancel = () => {
      pending.delete(debounced);
      debounced.cancel();
    };
    return call;
  }
  debounceInput.flushAll = () => [...pending].forEach((debounced) => debounced.flush());
  return debounceInput;
}

export default {
  __init__: ["flowdeskPropertiesProvider"],
  flowdeskPropertiesProvider: ["type", FlowdeskPropertiesProvider],
  debounceInput: ["factory", flushableDebounce],
};

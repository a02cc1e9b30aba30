// The designer's read-only diagrams (a version, an instance's state, an upload's errors): bpmn-js's
// navigated viewer — the modeler and its properties panel live in the editor bundle (editor.js).
import NavigatedViewer from "bpmn-js/lib/NavigatedViewer";
import { mountAll } from "./diagram.js";

mountAll((container) => new NavigatedViewer({ container }));

// Copies bpmn-js's stylesheets and icon font next to the bundle (they are not bundled by esbuild).
import { cpSync, mkdirSync } from "node:fs";

const out = new URL("../../static/build/", import.meta.url);
mkdirSync(out, { recursive: true });
cpSync(new URL("../node_modules/bpmn-js/dist/assets/", import.meta.url), out, { recursive: true });
